package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
)

func fleetRebootsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON, all bool
	c := &cobra.Command{
		Use:   "reboots",
		Short: "Show who waits to reboot for which window and why, who holds a lease, who is blocked, who fell back",
		Long: `Show the fleet's reboots into new kernels: each host's maintenance window,
kernel rollout and state, what it waits for (its window, the group's budget, an
approval), the lease it holds and until when, what blocks it (the
stent.io/no-reboot label, the host's own blockers: a file, firing alerts, a
failed pre-reboot hook) and the last boot's outcome (a fallback names the
kernel it came back on). Hosts with nothing to do are left out unless --all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := admin(sf, func(c *api.Client) (*api.RebootStatus, error) { return c.Reboots(cmd.Context()) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, st)
			}
			printReboots(env.Stdout, st, all)
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	c.Flags().BoolVar(&all, "all", false, "list idle hosts too")
	c.AddCommand(fleetRebootApproveCmd(env, sf))
	return c
}

func printReboots(out io.Writer, st *api.RebootStatus, all bool) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tWINDOW\tSTATE\tKERNEL\tTARGET\tLEASE UNTIL\tWAITING FOR / BLOCKED BY")
	shown := 0
	for _, h := range st.Hosts {
		idle := h.State == "idle" && h.Lease == "" && h.Wait == "" && len(h.Blockers) == 0 && h.LastBoot == nil
		if idle && !all {
			continue
		}
		shown++
		lease := "-"
		if h.Lease != "" {
			lease = h.LeaseEnds.Local().Format(time.DateTime)
		}
		why := h.Wait
		if len(h.Blockers) > 0 {
			why = strings.TrimPrefix(why+"; blocked: "+strings.Join(h.Blockers, "; "), "; ")
		}
		if h.LastBoot != nil && h.LastBoot.Result == api.ResultFellBack {
			why = strings.TrimPrefix(why+fmt.Sprintf("; fell back from %s to %s: %s", h.LastBoot.To, h.LastBoot.Booted, h.LastBoot.Reason), "; ")
		}
		// Names, kernels, blockers and fallback reasons come from the hosts.
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", api.Escape(h.Hostname), dash(h.Window), h.State, dash(api.Escape(h.Kernel)), dash(h.Target), lease, dash(api.Escape(why)))
	}
	w.Flush()
	if shown == 0 {
		fmt.Fprintln(out, "No host is waiting to reboot, rebooting or blocked.")
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fleetRebootApproveCmd(env *Env, sf *serverFlags) *cobra.Command {
	var reason string
	return func() *cobra.Command {
		c := &cobra.Command{
			Use:   "approve HOST",
			Short: "Approve one host's emergency reboot outside its window (for windows with --require-approval)",
			Long: `Approve one host's emergency reboot outside its maintenance window, for
windows set with --require-approval. HOST is a host id or hostname. The host
still waits for its group's budget; the approval is used up by its reboot.`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := adminDo(sf, func(c *api.Client) error {
					return c.ApproveReboot(cmd.Context(), args[0], api.RebootApproval{Reason: reason})
				}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "approved the emergency reboot of %s\n", args[0])
				return nil
			},
		}
		reasonFlag(c, &reason)
		return c
	}()
}
