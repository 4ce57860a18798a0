package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/inventory/collect"
)

func init() { addCommand(newInventoryCmd) }

func newInventoryCmd(env *Env) *cobra.Command {
	var asJSON bool
	var nowFlag string
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Describe this host for patch planning",
		Long: `Describe this host for patch planning: distribution, running kernel and its
package version, boot time, installed kernel packages, /boot usage, whether a
reboot is needed and why, processes still mapping deleted or replaced
libraries, and the live patches applied with their CVEs.

The --json output is the input of "stent plan --inventory FILE": collect it on
every host and plan centrally.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			now, err := parseNow(nowFlag)
			if err != nil {
				return err
			}
			inv, err := collect.Host(cmd.Context(), env.Root, env.RunDir, now)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(env.Stdout, inv)
			}
			printInventory(env.Stdout, inv)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the inventory as JSON (the input format of stent plan)")
	cmd.Flags().StringVar(&nowFlag, "now", "", "the current time, RFC 3339 (for reproducible output)")
	return cmd
}

// parseNow reads --now; empty means the clock.
func parseNow(s string) (time.Time, error) {
	if s == "" {
		return time.Now().UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--now %q: want an RFC 3339 time such as 2026-11-20T12:00:00Z", s)
	}
	return t.UTC(), nil
}

func printInventory(out io.Writer, inv *inventory.Inventory) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	name := inv.OS.PrettyName
	if name == "" {
		name = strings.TrimSpace(inv.OS.ID + " " + inv.OS.VersionID + " " + inv.OS.Codename)
	}
	k := inv.Kernel
	fmt.Fprintf(w, "Host:\t%s\n", inv.Hostname)
	fmt.Fprintf(w, "Distribution:\t%s (%s)\n", name, inv.OS.Family)
	fmt.Fprintf(w, "Kernel:\t%s (package %s, upstream %s)\n", k.Release, k.PackageVersion, orDash(k.Upstream))
	fmt.Fprintf(w, "Booted:\t%s (%.1f days ago)\n", k.BootTime.Format(time.RFC3339), k.UptimeDays)
	if k.BuildAgeDays != nil {
		fmt.Fprintf(w, "Built:\t%s (%.0f days ago)\n", k.BuildDate, *k.BuildAgeDays)
	}
	for _, p := range inv.KernelPackages {
		mark := ""
		if p.Running {
			mark = " (running)"
		}
		if p.Release == inv.NewestKernel {
			mark += " (newest)"
		}
		fmt.Fprintf(w, "Installed:\t%s %s%s\n", p.Name, p.Version, mark)
	}
	if b := inv.Boot; b.TotalBytes > 0 {
		fmt.Fprintf(w, "/boot:\t%d%% used (%d MiB free of %d MiB)\n", b.UsedBytes*100/b.TotalBytes, b.FreeBytes>>20, b.TotalBytes>>20)
	}
	if inv.Reboot.Required {
		fmt.Fprintf(w, "Reboot:\tneeded\n")
		for _, r := range inv.Reboot.Reasons {
			fmt.Fprintf(w, "\t%s: %s\n", r.Code, r.Detail)
		}
	} else {
		fmt.Fprintf(w, "Reboot:\tnot needed\n")
	}
	for _, p := range inv.StaleProcesses {
		who := p.Comm
		if p.Unit != "" {
			who += " in " + p.Unit
		}
		fmt.Fprintf(w, "Restart:\tpid %d %s: %s\n", p.PID, who, strings.Join(p.Libraries, ", "))
	}
	if len(inv.LivePatches) == 0 {
		fmt.Fprintf(w, "Live patches:\tnone\n")
	}
	for _, lp := range inv.LivePatches {
		state := "enabled"
		if !lp.Enabled {
			state = "disabled"
		}
		cves := strings.Join(lp.CVEs, ", ")
		if !lp.Manifest {
			cves = "CVEs unknown (no manifest)"
		}
		fmt.Fprintf(w, "Live patch:\t%s (%s): %s\n", lp.Name, state, cves)
	}
	for _, s := range inv.Warnings {
		fmt.Fprintf(w, "Warning:\t%s\n", s)
	}
	w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
