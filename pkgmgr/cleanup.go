package pkgmgr

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// DefaultKeep is how many kernels cleanup keeps by default: the running
// one, the newest and one known-good fallback.
const DefaultKeep = 3

// Policy says which kernels Cleanup keeps.
type Policy struct {
	// Keep is how many kernels stay (DefaultKeep when 0). The protected
	// ones below always stay, even beyond Keep; the rest of the places go
	// to the newest.
	Keep int
	// Running is the running kernel's release; empty means the Manager's.
	// Cleanup refuses to run when it is not known.
	Running string
	// KnownGood is the last release that booted healthy (see State).
	KnownGood string
	// Pinned releases are never removed (/etc/stent/kernel-pins, --pin).
	Pinned []string
	// DryRun lists what would be removed, changing nothing.
	DryRun bool
}

// Decision is what cleanup does with one kernel, and why.
type Decision struct {
	Kernel Kernel `json:"kernel"`
	Remove bool   `json:"remove"`
	Reason string `json:"reason"`
}

// SelectCleanup decides, for kernels as Kernels lists them (newest
// first), which ones a cleanup under p keeps and which it removes. It is
// pure: Cleanup acts on its answer.
func SelectCleanup(ks []Kernel, p Policy) ([]Decision, error) {
	keep := p.Keep
	if keep == 0 {
		keep = DefaultKeep
	}
	if keep < 1 {
		return nil, fmt.Errorf("keep %d: must be at least 1", p.Keep)
	}
	if p.Running == "" {
		return nil, fmt.Errorf("cleanup: the running kernel's release is not known; refusing to remove kernels")
	}
	ds := make([]Decision, len(ks))
	kept := 0
	for i, k := range ks {
		ds[i].Kernel = k
		var why []string
		if k.Release == p.Running || k.Running {
			why = append(why, "running")
		}
		if p.KnownGood != "" && k.Release == p.KnownGood {
			why = append(why, "last known-good")
		}
		if slices.Contains(p.Pinned, k.Release) {
			why = append(why, "pinned")
		}
		if k.Held {
			why = append(why, "held by the package manager")
		}
		if k.MetaTarget {
			why = append(why, "the metapackage depends on it")
		}
		if len(why) > 0 {
			ds[i].Reason = strings.Join(why, ", ")
			kept++
		} else {
			ds[i].Remove = true
		}
	}
	// The free places go to the newest of the rest (ks is newest first).
	for i := range ds {
		if ds[i].Remove && kept < keep {
			ds[i].Remove = false
			ds[i].Reason = "among the newest"
			kept++
		}
	}
	for i := range ds {
		if ds[i].Remove {
			ds[i].Reason = fmt.Sprintf("beyond the %d kept", keep)
		}
	}
	return ds, nil
}

// Cleanup removes the kernels SelectCleanup picks for removal through the
// package manager (their image, modules and headers packages) and returns
// them; with p.DryRun it only returns them.
func (m *Manager) Cleanup(ctx context.Context, p Policy) ([]Kernel, error) {
	if p.Running == "" {
		p.Running = m.running()
	}
	ks, err := m.Kernels(ctx)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	ds, err := SelectCleanup(ks, p)
	if err != nil {
		return nil, err
	}
	var remove []Kernel
	var pkgs []string
	for _, d := range ds {
		if d.Remove {
			remove = append(remove, d.Kernel)
			pkgs = append(pkgs, d.Kernel.Packages...)
		}
	}
	if len(remove) == 0 {
		m.progress("nothing to remove")
		return nil, nil
	}
	m.progress("removing %s", kernelList(remove))
	switch m.Family {
	case Apt:
		err = m.aptRemove(ctx, pkgs, p.DryRun)
	case Dnf:
		err = m.dnfRemove(ctx, pkgs, p.DryRun)
	default:
		err = fmt.Errorf("family %q: %w", m.Family, ErrNotSupported)
	}
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	return remove, nil
}

// aptRemove purges pkgs, after an apt-get simulation shows that nothing
// else would be removed or installed along with them.
func (m *Manager) aptRemove(ctx context.Context, pkgs []string, dryRun bool) error {
	args := append([]string{"remove", "--purge"}, m.aptOptions()...)
	args = append(args, pkgs...)
	out, err := m.run(ctx, aptEnv, "apt-get", append([]string{"-s"}, args...)...)
	if err != nil {
		return err
	}
	var extra []string
	for _, c := range parseAptSimulation(out) {
		if c.To != "" || !slices.Contains(pkgs, c.Name) {
			extra = append(extra, c.String())
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("removing %s would also change %s; remove them by hand if that is meant: %w",
			strings.Join(pkgs, " "), strings.Join(extra, ", "), ErrProtected)
	}
	if dryRun {
		return nil
	}
	if _, err := m.run(ctx, aptEnv, "apt-get", args...); err != nil {
		return err
	}
	after, err := m.dpkgQuery(ctx)
	if err != nil {
		return err
	}
	for _, e := range after {
		if slices.Contains(pkgs, e.Name) && e.present() {
			return fmt.Errorf("apt-get succeeded but %s is still in state %q: %w", e.Name, strings.TrimSpace(e.Status), ErrIncomplete)
		}
	}
	return nil
}

func kernelList(ks []Kernel) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.Release
	}
	return strings.Join(s, ", ")
}
