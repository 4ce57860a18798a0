package hostcli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/patcher"
)

func init() {
	AddCommand(newLoadPersistedCmd)
	AddCommand(newPersistCmd)
}

func newLoadPersistedCmd(env *Env) *cobra.Command {
	var asJSON, quiet bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "load-persisted",
		Short: "Apply, at boot, the stored patches that match the running kernel",
		Long: `Apply every patch stored with "stent apply --persist" that was built for the
running kernel (release and build ID), highest cumulative level only. Run at
boot by stent-load-persisted.service, before the network comes up.

Crash-loop guard: a patch loaded from here or with --persist is marked until
it has stayed up for the guard window (stent persist confirm, run by
stent-confirm.timer). If the machine goes down before that without a clean
shutdown (stent persist mark-shutdown, run by stent-shutdown-mark.service),
the next boot quarantines the patch instead of loading it again; stent
status shows why. stent apply --persist lifts the quarantine.

Exits non-zero when a stored patch failed to load; the others are loaded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := env.Runtime().LoadPersisted(cmd.Context(), patcher.ApplyOptions{Timeout: timeout, Progress: progressPrinter(env.Stderr, quiet || asJSON)})
			if err != nil {
				return err
			}
			if asJSON {
				if err := WriteJSON(env.Stdout, rep); err != nil {
					return err
				}
			} else {
				for _, n := range rep.Loaded {
					fmt.Fprintf(env.Stdout, "loaded %s\n", n)
				}
				for _, q := range rep.Quarantined {
					fmt.Fprintf(env.Stdout, "quarantined %s: %s\n", q.Name, q.Reason)
				}
				for _, s := range rep.Skipped {
					fmt.Fprintf(env.Stdout, "skipped %s: %s\n", s.Name, s.Reason)
				}
				for _, s := range rep.Failed {
					fmt.Fprintf(env.Stdout, "FAILED %s: %s\n", s.Name, s.Reason)
				}
				if len(rep.Loaded)+len(rep.Skipped)+len(rep.Failed) == 0 {
					fmt.Fprintln(env.Stdout, "no stored patches")
				}
			}
			if len(rep.Failed) > 0 {
				return fmt.Errorf("%d stored patch(es) failed to load", len(rep.Failed))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for each transition")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVarP(&quiet, "quiet", "q", false, "print no progress")
	return cmd
}

func newPersistCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "persist",
		Short: "Manage the crash-loop guard of stored patches",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "confirm",
		Short: "Confirm patches that have stayed up for the guard window",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			done, err := env.Runtime().Confirm()
			for _, n := range done {
				fmt.Fprintf(env.Stdout, "confirmed %s\n", n)
			}
			return err
		},
	}, &cobra.Command{
		Use:   "mark-shutdown",
		Short: "Record a clean shutdown, so a planned reboot does not quarantine fresh patches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return env.Runtime().MarkShutdown()
		},
	})
	return cmd
}
