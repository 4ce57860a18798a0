package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetHostsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "hosts [ID]",
		Short: "List enrolled hosts, or show one with its inventory",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				h, err := admin(sf, func(c *api.Client) (*api.Host, error) { return c.Host(cmd.Context(), args[0]) })
				if err != nil {
					return err
				}
				return writeJSON(env.Stdout, h)
			}
			hs, err := admin(sf, func(c *api.Client) ([]api.Host, error) { return c.Hosts(cmd.Context()) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, hs)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tHOSTNAME\tCHANNEL\tKERNEL\tSTATE\tHEALTH\tPATCHES\tLAST SEEN")
			for _, h := range hs {
				state := "offline"
				switch {
				case h.Revoked:
					state = "revoked"
				case h.Online:
					state = "online"
				}
				var ps []string
				for _, p := range h.Patches {
					if p.Enabled {
						ps = append(ps, api.Escape(p.Name))
					}
				}
				seen := "never"
				if !h.LastSeen.IsZero() {
					seen = time.Since(h.LastSeen).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, api.Escape(h.Hostname), h.Channel, api.Escape(h.KernelRelease), state, api.Escape(h.Health), strings.Join(ps, ","), seen)
			}
			return w.Flush()
		},
	}
	jsonFlag(c, &asJSON)
	return c
}

func fleetRevokeHostCmd(env *Env, sf *serverFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-host ID",
		Short: "Revoke a host's credential: its agent is refused from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminDo(sf, func(c *api.Client) error { return c.RevokeHost(cmd.Context(), args[0]) })
		},
	}
}

func fleetSetLabelsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var reason string
	var asJSON bool
	c := &cobra.Command{
		Use:   "set-labels ID [KEY=VALUE]... [--reason TEXT]",
		Short: "Replace an enrolled host's labels (operator)",
		Long: `Replace the labels of an enrolled host, which it got from its enrollment
token, with the ones given (none: the host has no label). What labels select
follows at once: the host's maintenance window, its plan (re-planned now,
not at its next inventory), and the running rollouts whose selector it now
matches, which take it into their current wave. Rollouts it no longer
matches keep it. Audited as host.labels with the previous labels.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := api.ParseLabels(args[1:])
			if err != nil {
				return withCode(2, err)
			}
			h, err := admin(sf, func(c *api.Client) (*api.Host, error) {
				return c.SetHostLabels(cmd.Context(), args[0], api.HostLabelsRequest{Labels: labels, Reason: reason})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, h)
			}
			var kvs []string
			for k, v := range h.Labels {
				kvs = append(kvs, k+"="+v)
			}
			sort.Strings(kvs)
			if len(kvs) == 0 {
				kvs = []string{"(none)"}
			}
			fmt.Fprintf(env.Stdout, "%s (%s) labels: %s\n", h.ID, api.Escape(h.Hostname), strings.Join(kvs, " "))
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	jsonFlag(c, &asJSON)
	return c
}
