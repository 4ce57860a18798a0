package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetRolloutCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "rollouts [ID]",
		Short: "List rollouts, or show one with each host's state",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			withHosts := func(c *api.Client, ctx context.Context, id string) (*api.Rollout, error) {
				return c.Rollout(ctx, id, true)
			}
			return listOrShow(cmd, env, sf, args, asJSON, (*api.Client).Rollouts, withHosts, printRollouts, func(r api.Rollout) error {
				w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "\nHOST\tHOSTNAME\tWAVE\tSTATE\tERROR")
				for _, h := range r.Hosts {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", h.HostID, api.Escape(h.Hostname), h.Wave, h.State, api.Escape(h.Error))
				}
				return w.Flush()
			})
		},
	}
	jsonFlag(c, &asJSON)
	return c
}

func fleetActionCmd(env *Env, sf *serverFlags, action string) *cobra.Command {
	var reason, patch string
	var maxFail float64
	var asJSON bool
	short := map[string]string{
		"pause":  "Pause a rollout: no further waves until resumed",
		"resume": "Resume a paused or halted rollout",
		"revert": "Revert a rollout's patch on its hosts, or with --patch a patch on the whole fleet",
	}[action]
	c := &cobra.Command{
		Use:   action + " [ROLLOUT]",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rs []api.Rollout
			switch {
			case action == "revert" && patch != "":
				if len(args) > 0 {
					return errors.New("give a rollout id or --patch, not both")
				}
				var err error
				rs, err = admin(sf, func(c *api.Client) ([]api.Rollout, error) {
					return c.RevertPatch(cmd.Context(), api.RevertRequest{Name: patch, Reason: reason})
				})
				if err != nil {
					return err
				}
			case len(args) == 1:
				req := api.RolloutActionRequest{Reason: reason}
				if cmd.Flags().Changed("max-failure-pct") {
					req.MaxFailurePct = &maxFail
				}
				r, err := admin(sf, func(c *api.Client) (*api.Rollout, error) { return c.RolloutAction(cmd.Context(), args[0], action, req) })
				if err != nil {
					return err
				}
				rs = append(rs, *r)
			default:
				return errors.New("which rollout? give its id (stent fleet rollouts lists them)")
			}
			if asJSON {
				return writeJSON(env.Stdout, rs)
			}
			printRollouts(env.Stdout, rs)
			return nil
		},
	}
	reasonFlag(c, &reason)
	jsonFlag(c, &asJSON)
	if action == "resume" {
		c.Flags().Float64Var(&maxFail, "max-failure-pct", 0, "new failure threshold, to go on past failures you accept")
	}
	if action == "revert" {
		c.Flags().StringVar(&patch, "patch", "", "revert this patch on every host of every rollout of it")
	}
	return c
}

func printRollouts(out io.Writer, rs []api.Rollout) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  ID\tPATCH\tLEVEL\tCHANNEL\tSTATE\tWAVE\tTARGET\tAPPLIED\tHEALTHY\tFAILED\tREVERTED")
	for _, r := range rs {
		fmt.Fprintf(w, "  %s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", r.ID, r.Name, r.Level, r.Channel, r.State,
			waveName(r), r.Counts.Target, r.Counts.Applied, r.Counts.Healthy, r.Counts.Failed, r.Counts.Reverted)
		if r.Reason != "" {
			fmt.Fprintf(w, "  \t%s\n", r.Reason)
		}
	}
	w.Flush()
}

func waveName(r api.Rollout) string {
	if r.Wave == 0 {
		return "canary"
	}
	if r.Wave <= len(r.Waves) {
		return fmt.Sprintf("%d/%d (%d%%)", r.Wave, len(r.Waves), r.Waves[r.Wave-1])
	}
	return strconv.Itoa(r.Wave)
}
