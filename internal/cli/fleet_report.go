package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetReportCmd(env *Env, sf *serverFlags) *cobra.Command {
	var q planQueryFlags
	var rf reportFlags
	c := &cobra.Command{
		Use:   "report --format json|csv|html [--label K=V]... [--host ID] [-o FILE]",
		Short: "Compliance report of the server's live plan, as stent report renders it",
		Long: `Render the compliance report of the plan stent-server keeps (stent fleet plan)
with the renderer of "stent report": per host and fleet-wide, per rule, the
status (compliant, at risk, breached, excepted), days exposed, deadline and
evidence. --format html writes one self-contained page with a chart of
exposure by severity over the last --days days; csv writes one row per host
and rule, then one per rule for the fleet (host "*").

--label K=V (repeatable) and --host select hosts as for stent fleet plan.

Exit codes: 0 reported; 1 error; 2 a usage error (a bad --format, --fail-on
or --label); 3 --fail-on matched a host (the report is written first).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := rf.check(); err != nil {
				return err
			}
			sel, err := api.ParseLabels(q.labels)
			if err != nil {
				return withCode(2, fmt.Errorf("--label: %w", err))
			}
			// The server makes the report: what comes is each host's
			// section, not its plan.
			wr, err := admin(sf, func(c *api.Client) (*api.PlanReport, error) {
				return c.FleetReport(cmd.Context(), api.PlanQuery{Selector: sel, Host: q.host}, rf.days)
			})
			if err != nil {
				return err
			}
			for _, h := range wr.Unplanned {
				fmt.Fprintf(env.Stderr, "warning: host %s: no plan: %s\n", api.Escape(h.HostID), api.Escape(h.Error))
			}
			return rf.writeReport(env, wr.Report)
		},
	}
	q.bind(c)
	rf.bind(c)
	return c
}
