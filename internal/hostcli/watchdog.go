package hostcli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/watchdog"
)

func init() { AddCommand(newWatchdogCmd) }

func newWatchdogCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watchdog",
		Short: "Guard the first boot of a new kernel with the watchdog",
		Long: `A kernel that panics on its first boot reboots by itself (panic=) into the
previous default kernel, as the boot loader's one-shot entry is spent. One
that hangs, or comes up without ever starting the agent, needs a watchdog.
Before the agent (stent agent --kernel-updates) reboots into a new kernel it
plans a trial boot (trial-boot in --state-dir); early in the next boot
stent-boot-watchdog.service runs "stent watchdog arm", which arms
/dev/watchdog (the hardware watchdog, or the kernel's softdog module) for
the trial's timeout if the running kernel is the one on trial, once; the
agent disarms it when it has judged the boot. A boot that never gets that
far is reset, and comes back on the previous kernel.`,
	}
	var release string
	var timeout time.Duration
	plan := &cobra.Command{
		Use:   "plan --release RELEASE [--timeout 10m]",
		Short: "Plan a trial boot of RELEASE (the agent does this before its reboot)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := env.watchdogFiles().Plan(release, timeout); err != nil {
				return WithCode(2, err)
			}
			fmt.Fprintf(env.Stdout, "the next boot of %s is a trial: the watchdog will be armed for it\n", release)
			return nil
		},
	}
	plan.Flags().StringVar(&release, "release", "", "kernel release (uname -r) of the trial boot")
	plan.Flags().DurationVar(&timeout, "timeout", watchdog.DefaultTimeout, "how long the boot has until the agent judges it")
	arm := &cobra.Command{
		Use:   "arm",
		Short: "Arm the watchdog if this boot is a planned trial (run at boot by stent-boot-watchdog.service)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			running, err := os.ReadFile(filepath.Join(env.Root, "proc/sys/kernel/osrelease"))
			if err != nil {
				return err
			}
			t, err := env.watchdogFiles().Arm(strings.TrimSpace(string(running)))
			if err != nil {
				return err
			}
			if t == nil {
				fmt.Fprintln(env.Stdout, "no trial boot planned for this kernel: watchdog not armed")
				return nil
			}
			fmt.Fprintf(env.Stdout, "trial boot of %s: %s armed, resets the machine at %s unless the agent judges the boot first\n",
				t.Release, t.Device, t.Armed.Add(t.Timeout.Duration()).Format(time.RFC3339))
			return nil
		},
	}
	disarm := &cobra.Command{
		Use:   "disarm",
		Short: "Stop the watchdog armed for this boot (the agent does this once it has judged the boot)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := env.watchdogFiles().Disarm()
			if err != nil {
				return err
			}
			if t == nil {
				fmt.Fprintln(env.Stdout, "no watchdog armed in this boot")
				return nil
			}
			fmt.Fprintf(env.Stdout, "watchdog for the trial boot of %s stopped\n", t.Release)
			return nil
		},
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the planned trial boot and the watchdog armed in this boot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			armed, err := env.watchdogFiles().Armed()
			if err != nil {
				return err
			}
			planned, err := env.watchdogFiles().Planned()
			if err != nil {
				return err
			}
			if asJSON {
				return WriteJSON(env.Stdout, struct {
					Planned *watchdog.Trial `json:"planned"`
					Armed   *watchdog.Trial `json:"armed"`
				}{planned, armed})
			}
			switch {
			case armed != nil:
				fmt.Fprintf(env.Stdout, "armed: trial boot of %s, %s resets the machine at %s unless disarmed\n",
					armed.Release, armed.Device, armed.Armed.Add(armed.Timeout.Duration()).Format(time.RFC3339))
			default:
				fmt.Fprintln(env.Stdout, "armed: no")
			}
			switch {
			case planned != nil:
				fmt.Fprintf(env.Stdout, "planned: the next boot of %s (timeout %v, planned %s)\n",
					planned.Release, planned.Timeout.Duration(), planned.Planned.Format(time.RFC3339))
			default:
				fmt.Fprintln(env.Stdout, "planned: no")
			}
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.AddCommand(plan, arm, disarm, status)
	return cmd
}

// watchdogFiles are the trial boot records in --state-dir and --run-dir,
// and the watchdog device under --root.
func (e *Env) watchdogFiles() watchdog.Files {
	return watchdog.Files{StateDir: e.StateDir, RunDir: e.RunDir, Device: filepath.Join(e.Root, "dev/watchdog")}
}
