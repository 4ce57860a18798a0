package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

func fleetPlanCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	var q planQueryFlags
	c := &cobra.Command{
		Use:   "plan [--label K=V]... [--host ID] [--json]",
		Short: "Show the server's live plan: per host the actions, deadlines and compliance, as stent plan prints them",
		Long: `Show the plan stent-server keeps for every host that sent an inventory: the
planner of "stent plan" over the feeds the server keeps (stent fleet feeds)
and the policy uploaded to it (stent fleet policy), made again whenever an
inventory, a feed, a published bundle, a maintenance window or the policy
changes. The output is that of "stent plan"; --json prints the plan JSON of
"stent plan --json", which "stent report --plan FILE" renders.

--label K=V (repeatable) keeps the hosts with all those labels; --host the
one host with that id or hostname. Hosts the server cannot plan (an
inventory it cannot judge; no feeds yet) are named on stderr.

Exit codes: 0 shown, 1 error (the server has no plan yet: no feed makes a
vulnerability database; see stent fleet feeds).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fp, err := fetchPlan(cmd.Context(), env, sf, q)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, fp)
			}
			printPlan(env.Stdout, fp)
			return nil
		},
	}
	q.bind(c)
	jsonFlag(c, &asJSON)
	return c
}

// planQueryFlags select hosts of the live plan.
type planQueryFlags struct {
	labels []string
	host   string
}

func (q *planQueryFlags) bind(c *cobra.Command) {
	c.Flags().StringArrayVar(&q.labels, "label", nil, "only hosts with this label, K=V; repeatable")
	c.Flags().StringVar(&q.host, "host", "", "only this host (id or hostname)")
}

// fetchPlan reads the selected hosts of the live plan, page by page, into
// the plan stent plan would have made of their inventories at the time of
// the server's plan (api.Client.FleetPlan). Hosts without a plan are named
// on stderr; none at all with a plan is an error.
func fetchPlan(ctx context.Context, env *Env, sf *serverFlags, qf planQueryFlags) (*policy.FleetPlan, error) {
	wp, err := fetchWholePlan(ctx, env, sf, qf)
	if err != nil {
		return nil, err
	}
	return wp.Plan, nil
}

// fetchWholePlan is fetchPlan with the policy version and feed generation
// of the server's plan.
func fetchWholePlan(ctx context.Context, env *Env, sf *serverFlags, qf planQueryFlags) (*api.WholePlan, error) {
	sel, err := api.ParseLabels(qf.labels)
	if err != nil {
		return nil, withCode(2, fmt.Errorf("--label: %w", err))
	}
	q := api.PlanQuery{Selector: sel, Host: qf.host}
	wp, err := admin(sf, func(c *api.Client) (*api.WholePlan, error) { return c.FleetPlan(ctx, q) })
	if err != nil {
		return nil, err
	}
	for _, h := range wp.Unplanned {
		fmt.Fprintf(env.Stderr, "warning: host %s: no plan: %s\n", api.Escape(h.HostID), api.Escape(h.Error))
	}
	return wp, nil
}
