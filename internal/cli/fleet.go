package cli

import "github.com/spf13/cobra"

func init() { addCommand(newFleetCmd) }

// newFleetCmd is "stent fleet". Each subcommand is in its own file,
// fleet_<subcommand>.go; how they reach the server (the server flags, the
// admin call helpers, --json and --reason) is in admin.go.
func newFleetCmd(env *Env) *cobra.Command {
	sf := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Operate a fleet through stent-server: status, hosts, rollouts, kernels and reboots, live plan and report, tokens, audit log",
		Long: `Operate a fleet through stent-server: status, hosts, rollouts, tokens, audit log,
the hosts' inventories for "stent plan", and the plan and compliance report
the server keeps current from them.

The server and the admin token come from --server and --token (or
--token-file), or from STENT_SERVER and STENT_TOKEN (or STENT_TOKEN_FILE);
the server's first admin token is in its <data-dir>/admin.token.

Exit codes: 0 done, 1 error, 4 the token's role does not allow the action
(viewer reads; operator also rolls out, approves the plan's actions and
makes enrollment tokens; admin also manages admin tokens, revokes hosts and
changes settings and the planning policy).`,
	}
	sf.bind(cmd.PersistentFlags())
	add := func(c *cobra.Command) { cmd.AddCommand(c) }
	add(fleetStatusCmd(env, sf))
	add(fleetHostsCmd(env, sf))
	add(fleetInventoriesCmd(env, sf))
	add(fleetRolloutCmd(env, sf))
	for _, action := range []string{"pause", "resume", "revert"} {
		add(fleetActionCmd(env, sf, action))
	}
	add(fleetEnrollTokenCmd(env, sf))
	add(fleetTokenCmd(env, sf))
	add(fleetAuditCmd(env, sf))
	add(fleetRevokeHostCmd(env, sf))
	add(fleetSetLabelsCmd(env, sf))
	add(fleetSettingsCmd(env, sf))
	add(fleetWindowsCmd(env, sf))
	add(fleetRebootsCmd(env, sf))
	add(fleetKernelsCmd(env, sf))
	add(fleetFeedsCmd(env, sf))
	add(fleetPlanCmd(env, sf))
	add(fleetReportCmd(env, sf))
	add(fleetPolicyCmd(env, sf))
	add(fleetActionsCmd(env, sf))
	return cmd
}
