package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

func fleetWindowsCmd(env *Env, sf *serverFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "windows",
		Short: "Show the maintenance windows hosts reboot in (set, delete: change them)",
		Long: `Show the maintenance windows: per group of hosts (a label selector), when
hosts may reboot into a new kernel, how many of the group at once, how long a
rebooting host may stay away, and whether emergency reboots outside the window
need an operator's approval. A host belongs to the first window (by name) whose
selector its labels match.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ws, err := admin(sf, func(c *api.Client) ([]api.MaintenanceWindow, error) { return c.Windows(cmd.Context()) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, ws)
			}
			printWindows(env.Stdout, ws, time.Now())
			return nil
		},
	}
	jsonFlag(c, &asJSON)
	c.AddCommand(fleetWindowSetCmd(env, sf), fleetWindowDeleteCmd(env, sf))
	return c
}

func printWindows(out io.Writer, ws []api.MaintenanceWindow, now time.Time) {
	if len(ws) == 0 {
		fmt.Fprintln(out, "No maintenance windows: hosts reboot only for emergency kernel rollouts, one at a time.")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tWHEN\tSELECTOR\tMAX UNAVAILABLE\tLEASE TTL\tAPPROVAL\tNEXT OPENING")
	for _, mw := range ws {
		next := "-"
		if pw, err := policy.ParseWindow(mw.When); err == nil {
			if t, ok := pw.NextOpening(now); ok {
				next = t.In(pw.Location()).Format("Mon 2006-01-02 15:04 MST")
			}
			if pw.Contains(now) {
				next = "open now"
			}
		}
		approval := "-"
		if mw.RequireApproval {
			approval = "emergencies"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\t%s\n", mw.Name, mw.When, selectorString(mw.Selector), mw.MaxUnavailable, time.Duration(mw.LeaseTTL), approval, next)
	}
	w.Flush()
}

func selectorString(sel map[string]string) string {
	if len(sel) == 0 {
		return "(every host)"
	}
	var kv []string
	for k, v := range sel {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func fleetWindowSetCmd(env *Env, sf *serverFlags) *cobra.Command {
	var mw api.MaintenanceWindow
	var selector []string
	var ttl time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "set NAME --when WINDOW --max-unavailable N|P% [--selector k=v] [--lease-ttl 30m] [--require-approval]",
		Short: "Create or replace a maintenance window",
		Long: `Create or replace a maintenance window for the hosts whose labels match
--selector (none: every host not matched by an earlier window).

--when takes the same grammar as stent plan's windows: "Tue 03:00-05:00
Europe/Berlin", "Mon-Fri 22:00-02:00 UTC", "daily 01:00-03:00 Asia/Tokyo",
"second Sunday of the month 02:00-06:00 America/New_York".
--max-unavailable is how many hosts of the group may reboot at once: a count
(1) or a percentage of the group (20%, rounded down, at least 1).
--lease-ttl bounds how long a rebooting host may stay away before its lease
expires and frees the budget. --require-approval makes emergency reboots
outside the window wait for "stent fleet reboots approve HOST".`,
		Example: `  stent fleet windows set web --when "Tue 03:00-05:00 Europe/Berlin" --selector role=web --max-unavailable 20%`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mw.When == "" {
				return errors.New("--when is required, e.g. --when \"Tue 03:00-05:00 Europe/Berlin\"")
			}
			if _, err := policy.ParseWindow(mw.When); err != nil {
				return fmt.Errorf("--when: %w", err)
			}
			if mw.MaxUnavailable == "" {
				return errors.New("--max-unavailable is required: a count (1) or a percentage of the group (20%)")
			}
			sel, err := api.ParseLabels(selector)
			if err != nil {
				return fmt.Errorf("--selector: %w", err)
			}
			mw.Name, mw.Selector, mw.LeaseTTL = args[0], sel, api.Duration(ttl)
			out, err := admin(sf, func(c *api.Client) (*api.MaintenanceWindow, error) { return c.PutWindow(cmd.Context(), mw) })
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, out)
			}
			printWindows(env.Stdout, []api.MaintenanceWindow{*out}, time.Now())
			return nil
		},
	}
	c.Flags().StringVar(&mw.When, "when", "", "the window, as in stent plan: \"Tue 03:00-05:00 Europe/Berlin\"")
	c.Flags().StringSliceVar(&selector, "selector", nil, "hosts with this label, k=v (repeatable; all must match)")
	c.Flags().StringVar(&mw.MaxUnavailable, "max-unavailable", "", "hosts of the group rebooting at once: a count (1) or a percentage (20%)")
	c.Flags().DurationVar(&ttl, "lease-ttl", 30*time.Minute, "how long a rebooting host may stay away before its lease expires")
	c.Flags().BoolVar(&mw.RequireApproval, "require-approval", false, "emergency reboots outside the window wait for an operator's approval")
	jsonFlag(c, &asJSON)
	return c
}

func fleetWindowDeleteCmd(env *Env, sf *serverFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a maintenance window (its hosts then reboot only for emergencies)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := adminDo(sf, func(c *api.Client) error { return c.DeleteWindow(cmd.Context(), args[0]) }); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "deleted window %s\n", args[0])
			return nil
		},
	}
}
