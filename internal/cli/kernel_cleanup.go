package cli

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/pkgmgr"
)

// kernelCleanupReport is stent kernel cleanup's --json output.
type kernelCleanupReport struct {
	DryRun    bool              `json:"dry_run"`
	Keep      int               `json:"keep"`
	Running   string            `json:"running"`
	KnownGood string            `json:"known_good,omitempty"`
	Pinned    []string          `json:"pinned,omitempty"`
	Decisions []pkgmgr.Decision `json:"decisions"`
	Removed   []pkgmgr.Kernel   `json:"removed"`
}

func newKernelCleanupCmd(env *Env) *cobra.Command {
	var asJSON, dryRun bool
	var keep int
	var pins []string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove old kernel packages, keeping the running, newest and known-good ones",
		Long: `Remove older kernel packages (image, modules and headers of a release) through
the package manager, keeping --keep kernels (default 3: the running one, the
newest and the known-good fallback).

Never removed, even beyond --keep: the running kernel, the last known-good one
(STATE-DIR/kernel.json), pinned ones (/etc/stent/kernel-pins and --pin), held
or versionlocked ones, and the one the kernel metapackage depends on. On apt a
simulation runs first and the removal is refused when apt would change any
other package. --dry-run lists what would go.

Exit codes: 0 done (or nothing to remove); 1 the removal failed or was
refused; 2 a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if keep < 1 {
				return withCode(2, fmt.Errorf("--keep %d: must be at least 1", keep))
			}
			m, err := kernelManager(env)
			if err != nil {
				return err
			}
			state, err := pkgmgr.LoadState(kernelStatePath(env))
			if err != nil {
				return err
			}
			allPins, err := kernelPins(env, pins)
			if err != nil {
				return err
			}
			ks, err := m.Kernels(cmd.Context())
			if err != nil {
				return err
			}
			p := pkgmgr.Policy{Keep: keep, Running: m.RunningRelease(), KnownGood: state.KnownGood, Pinned: allPins, DryRun: dryRun}
			rep := kernelCleanupReport{DryRun: dryRun, Keep: keep, Running: p.Running, KnownGood: state.KnownGood, Pinned: allPins, Removed: []pkgmgr.Kernel{}}
			if rep.Decisions, err = pkgmgr.SelectCleanup(ks, p); err != nil {
				return err
			}
			removed, err := m.Cleanup(cmd.Context(), p)
			if err != nil {
				return err
			}
			if removed != nil {
				rep.Removed = removed
			}
			if asJSON {
				return writeJSON(env.Stdout, rep)
			}
			for _, d := range rep.Decisions {
				verb := "keep"
				if slices.ContainsFunc(rep.Removed, func(k pkgmgr.Kernel) bool { return k.Release == d.Kernel.Release }) {
					verb = "removed"
					if dryRun {
						verb = "would remove"
					}
				}
				fmt.Fprintf(env.Stdout, "%-13s %s (%s): %s\n", verb, d.Kernel.Release, d.Kernel.Version, d.Reason)
			}
			if len(rep.Removed) == 0 {
				fmt.Fprintln(env.Stdout, "Nothing to remove.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&keep, "keep", pkgmgr.DefaultKeep, "how many kernels to keep (protected ones stay even beyond this)")
	f.BoolVar(&dryRun, "dry-run", false, "list what would be removed, changing nothing")
	f.BoolVar(&asJSON, "json", false, "print the decisions as JSON")
	f.StringArrayVar(&pins, "pin", nil, "never remove this kernel release (repeatable; adds to /etc/stent/kernel-pins)")
	return cmd
}
