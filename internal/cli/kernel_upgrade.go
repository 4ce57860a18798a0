package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/bootldr"
	"github.com/stent-dev/stent/pkgmgr"
)

// kernelUpgradeReport is stent kernel upgrade's --json output.
type kernelUpgradeReport struct {
	Result      *pkgmgr.Result `json:"result,omitempty"`
	BootDefault string         `json:"boot_default,omitempty"` // the boot loader's default release, before and (unchanged) after
	Restored    bool           `json:"boot_default_restored,omitempty"`
	Error       string         `json:"error,omitempty"`
}

func newKernelUpgradeCmd(env *Env) *cobra.Command {
	var asJSON, dryRun, noUpdate, meta bool
	var to string
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Install the newest (or the given) kernel through the package manager",
		Long: `Install the newest kernel, or the one --to names, through the host's package
manager: on apt the versioned image package (linux-image-6.1.0-57-amd64) and,
when the host has it or --meta asks, the metapackage (linux-image-amd64) at
the matching version; on dnf kernel-core and kernel.

It runs apt-get update first (not with --no-update), never asks a question
(an apt or a maintainer script that would is a failure), waits for the dpkg
lock at most 5 minutes, refuses held packages, checks /boot free space
before and the new kernel's vmlinuz and initramfs after, and reports what
the package database shows was installed. Progress goes to stderr.

The boot loader's default is not changed: the new kernel is booted once by
the agent and made the default only after a healthy boot. If the default
moved during a failed install, it is put back.

--to takes a kernel release (6.1.0-57-amd64), a package version (6.1.192-3:
the metapackage's version, whose dependency names the image) or both
(6.1.0-57-amd64=6.1.192-3).

Exit codes: 0 installed (or already installed, or the dry run passed); 1 the
install failed or was refused (held, no space, not found); 2 a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTo(to)
			if err != nil {
				return withCode(2, err)
			}
			t.DryRun, t.Meta = dryRun, meta
			m, err := kernelManager(env)
			if err != nil {
				return err
			}
			m.Update = !noUpdate
			var rep kernelUpgradeReport
			loader, before, bootErr := bootStatus(cmd, env)
			if before != nil {
				rep.BootDefault = before.DefaultRelease
			}
			res, err := m.Upgrade(cmd.Context(), t)
			rep.Result = res
			if err != nil && !dryRun && bootErr == nil {
				rep.Restored = restoreBootDefault(cmd, env, loader, before)
			}
			if err != nil {
				rep.Error = err.Error()
			}
			if asJSON {
				if jerr := writeJSON(env.Stdout, rep); jerr != nil {
					return jerr
				}
			} else {
				printUpgrade(env, rep, bootErr)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "install this kernel release, package version, or RELEASE=VERSION instead of the newest")
	f.BoolVar(&dryRun, "dry-run", false, "resolve, check /boot space and simulate, changing nothing")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.BoolVar(&noUpdate, "no-update", false, "do not run apt-get update (dnf makecache) first")
	f.BoolVar(&meta, "meta", false, "also install the kernel metapackage when the host does not have it")
	return cmd
}

// restoreBootDefault puts the boot loader's default back when a failed
// install moved it, so that nothing half-installed boots by default.
func restoreBootDefault(cmd *cobra.Command, env *Env, l *bootldr.Loader, before *bootldr.Status) bool {
	after, err := l.Status(cmd.Context())
	if err != nil || before == nil || after.DefaultRelease == before.DefaultRelease || before.DefaultRelease == "" {
		return false
	}
	if err := l.SetDefault(cmd.Context(), before.DefaultRelease); err != nil {
		fmt.Fprintf(env.Stderr, "stent: warning: the failed install moved the boot default to %s and it could not be put back to %s: %v\n",
			after.DefaultRelease, before.DefaultRelease, err)
		return false
	}
	fmt.Fprintf(env.Stderr, "stent: the boot default moved to %s during the failed install; put back to %s\n", after.DefaultRelease, before.DefaultRelease)
	return true
}

func printUpgrade(env *Env, rep kernelUpgradeReport, bootErr error) {
	res := rep.Result
	if res == nil {
		return
	}
	out := env.Stdout
	verb := "Installed"
	switch {
	case res.DryRun:
		verb = "Would install"
	case res.Already:
		verb = "Already installed"
	}
	fmt.Fprintf(out, "%s: kernel %s (%s)\n", verb, res.Release, pkgList(res.Asked))
	if sc := res.Space; sc != nil {
		ok := "enough"
		if !sc.OK {
			ok = "NOT enough"
		}
		fmt.Fprintf(out, "/boot: %d MiB free, about %d MiB needed: %s (%s)\n", sc.BootFree>>20, sc.BootNeed>>20, ok, sc.Estimate)
		if !sc.SameFS {
			fmt.Fprintf(out, "%s: %d MiB free, %d MiB needed\n", sc.RootPath, sc.RootFree>>20, sc.RootNeed>>20)
		}
	}
	for _, c := range res.Changes {
		fmt.Fprintf(out, "  %s\n", c)
	}
	for _, f := range res.Files {
		fmt.Fprintf(out, "Checked: %s\n", f)
	}
	for _, p := range res.Incomplete {
		fmt.Fprintf(out, "Not fully installed: %s\n", p)
	}
	if bootErr != nil {
		fmt.Fprintf(out, "Boot default: unknown (%v)\n", bootErr)
	} else {
		fmt.Fprintf(out, "Boot default: %s (unchanged)\n", orDash(rep.BootDefault))
	}
}

func pkgList(ps []pkgmgr.Package) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += " "
		}
		s += p.String()
	}
	return s
}
