package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetAuditCmd(env *Env, sf *serverFlags) *cobra.Command {
	var action, target string
	var after int64
	var limit int
	var asJSON bool
	c := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: admin actions and every host's apply, revert and reboot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := api.AuditQuery{Action: action, Target: target, After: after, Limit: limit}
			es, err := admin(sf, func(c *api.Client) ([]api.AuditEntry, error) { return c.Audit(cmd.Context(), q) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, es)
			}
			w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			for _, e := range es {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.At.Format(time.RFC3339), e.Actor, e.Action, e.Target, string(e.Detail))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&action, "action", "", "only this action (e.g. host.apply, rollout.halt)")
	c.Flags().StringVar(&target, "target", "", "only this target (host, rollout or token id)")
	c.Flags().Int64Var(&after, "after", 0, "only entries after this id")
	c.Flags().IntVar(&limit, "limit", 100, "at most this many entries")
	jsonFlag(c, &asJSON)
	return c
}
