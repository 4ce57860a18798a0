package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetActionsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON, all bool
	c := &cobra.Command{
		Use:   "actions [list] [--all] [--json] | actions approve ID [--reason TEXT]",
		Short: "List the live plan's proposed actions, and approve the ones that wait",
		Long: `List the actions stent-server proposes from its live plan (stent fleet plan),
one per kernel situation group, kind and target: apply a published live
patch (a rollout to exactly the hosts that need it), emergency reboot or
reboot into the newest installed kernel (a kernel rollout of the reboot
scheduler); when the fixed kernel is not installed yet, that kernel
rollout installs it first (the release another host of the fleet reports
for the package version the plan names). The kinds in the policy's "unattended" list (stent fleet policy)
are carried out at once; the others are "proposed" until "approve ID"
(operator) carries them out. An action never starts twice; a host leaves it
when its plan no longer has it, and an action without hosts is "done"
(listed with --all).

Exit codes: 0 listed or approved, 1 error (no such action, done or approved
already), 4 the token's role does not allow approving.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] != "list" {
				return withCode(2, fmt.Errorf("unknown subcommand %q: want list or approve ID", args[0]))
			}
			return listActions(cmd, env, sf, all, asJSON)
		},
	}
	jsonFlag(c, &asJSON)
	c.Flags().BoolVar(&all, "all", false, "list the done actions too")
	c.AddCommand(fleetActionsListCmd(env, sf), fleetActionsApproveCmd(env, sf))
	return c
}

// listActions prints the live plan's actions, for stent fleet actions and
// its list subcommand.
func listActions(cmd *cobra.Command, env *Env, sf *serverFlags, all, asJSON bool) error {
	l, err := admin(sf, func(c *api.Client) (*api.ActionList, error) { return c.Actions(cmd.Context(), all) })
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, l)
	}
	printActions(env.Stdout, l)
	return nil
}

func fleetActionsListCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON, all bool
	c := &cobra.Command{
		Use:   "list [--all] [--json]",
		Short: "List the live plan's actions (as stent fleet actions)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listActions(cmd, env, sf, all, asJSON)
		},
	}
	jsonFlag(c, &asJSON)
	c.Flags().BoolVar(&all, "all", false, "list the done actions too")
	return c
}

func fleetActionsApproveCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	var reason string
	c := &cobra.Command{
		Use:   "approve ID [--reason TEXT] [--json]",
		Short: "Approve a proposed action: the server carries it out (operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := admin(sf, func(c *api.Client) (*api.PlanAction, error) {
				return c.ApproveAction(cmd.Context(), args[0], api.ActionApproval{Reason: reason})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, a)
			}
			fmt.Fprintf(env.Stdout, "action %s approved: %s\n", api.Escape(a.ID), a.State)
			if a.Error != "" {
				fmt.Fprintf(env.Stdout, "not carried out yet: %s\n", api.Escape(a.Error))
			}
			if len(a.Refs) > 0 {
				fmt.Fprintf(env.Stdout, "started: %s\n", strings.Join(a.Refs, ", "))
			}
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	reasonFlag(c, &reason)
	return c
}

func printActions(out io.Writer, l *api.ActionList) {
	unattended := "none"
	if len(l.Unattended) > 0 {
		unattended = strings.Join(l.Unattended, ", ")
	}
	fmt.Fprintf(out, "Policy version %d; unattended: %s.\n\n", l.PolicyVersion, unattended)
	if len(l.Actions) == 0 {
		fmt.Fprintln(out, "No actions.")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATE\tKIND\tTARGET\tHOSTS\tDEADLINE\tSTARTED")
	for _, a := range l.Actions {
		state := a.State
		if a.Unattended {
			state += " (unattended)"
		} else if a.ApprovedBy != "" {
			state += " (approved)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, state, a.Kind, api.Escape(a.Target), a.HostCount, fmtTime(a.Deadline), strings.Join(a.Refs, ","))
	}
	w.Flush()
	for _, a := range l.Actions {
		if a.Error != "" {
			fmt.Fprintf(out, "\n%s: %s\n", a.ID, api.Escape(a.Error))
		}
	}
}
