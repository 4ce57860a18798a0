package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	rpmversion "github.com/knqyf263/go-rpm-version"
)

// The dnf path is tested only against recorded command sequences (no
// RHEL-family machine runs here). It assumes dnf 4 (RHEL 8 and 9): the
// repoquery --qf tags and the versionlock plugin's list format.

var dnfEnv = []string{"LC_ALL=C"}

// rpmFormat is the rpm -qa query format parseRPMQuery reads.
const rpmFormat = "%{NAME}\\t%{EPOCH}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"

// rpmEntry is one installed rpm.
type rpmEntry struct {
	Name, Epoch, VR, Arch string
}

// nvra is the package's name-version-release.arch, as dnf takes it.
func (e rpmEntry) nvra() string { return e.Name + "-" + e.VR + "." + e.Arch }

func parseRPMQuery(out []byte) ([]rpmEntry, error) {
	var es []rpmEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		if sc.Text() == "" {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("rpm -qa output line %d: want name, epoch, version-release and arch separated by tabs, got %q", n, sc.Text())
		}
		es = append(es, rpmEntry{Name: f[0], Epoch: f[1], VR: f[2], Arch: f[3]})
	}
	return es, sc.Err()
}

// kernelRPMs are the packages one RHEL kernel release is made of.
var kernelRPMs = []string{"kernel", "kernel-core", "kernel-modules", "kernel-modules-core", "kernel-modules-extra", "kernel-devel"}

// parseVersionlock returns name to locked version-release ("" when the
// lock has no version) from dnf versionlock list output
// ("kernel-core-0:5.14.0-362.8.1.el9_3.*").
func parseVersionlock(out []byte) map[string]string {
	locks := map[string]string{}
	for _, l := range parseLines(out) {
		if strings.HasPrefix(l, "Last metadata") || strings.Contains(l, " ") {
			continue
		}
		l = strings.TrimSuffix(strings.TrimPrefix(l, "!"), ".*")
		if i := strings.Index(l, ":"); i > 0 {
			if j := strings.LastIndex(l[:i], "-"); j > 0 {
				locks[l[:j]] = l[i+1:]
				continue
			}
		}
		// name-version-release without an epoch.
		f := strings.Split(l, "-")
		if len(f) >= 3 {
			locks[strings.Join(f[:len(f)-2], "-")] = strings.Join(f[len(f)-2:], "-")
		} else {
			locks[l] = ""
		}
	}
	return locks
}

func rpmCompare(a, b string) int {
	return rpmversion.NewVersion(a).Compare(rpmversion.NewVersion(b))
}

// dnfKernelsFrom builds the kernel list from rpm -qa entries.
func dnfKernelsFrom(es []rpmEntry, running string, locks map[string]string) []Kernel {
	type key struct{ vr, arch string }
	byKey := map[key][]rpmEntry{}
	var order []key
	for _, e := range es {
		if !slices.Contains(kernelRPMs, e.Name) {
			continue
		}
		k := key{e.VR, e.Arch}
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], e)
	}
	var ks []Kernel
	for _, k := range order {
		var img *rpmEntry
		for _, name := range []string{"kernel-core", "kernel"} {
			for i, e := range byKey[k] {
				if e.Name == name && img == nil {
					img = &byKey[k][i]
				}
			}
		}
		if img == nil {
			continue // headers or modules only
		}
		rel := k.vr + "." + k.arch
		kern := Kernel{Release: rel, Package: img.Name, Version: k.vr, Status: "installed", Running: rel == running}
		for _, e := range byKey[k] {
			kern.Packages = append(kern.Packages, e.nvra())
			if v, ok := locks[e.Name]; ok && (v == "" || v == k.vr) {
				kern.Held = true
			}
		}
		ks = append(ks, kern)
	}
	sortKernels(ks, rpmCompare)
	return ks
}

func (m *Manager) rpmQuery(ctx context.Context) ([]rpmEntry, error) {
	out, err := m.run(ctx, dnfEnv, "rpm", "-qa", "--qf", rpmFormat)
	if err != nil {
		return nil, err
	}
	return parseRPMQuery(out)
}

// dnfLocks returns the versionlock list; none when the plugin is missing.
func (m *Manager) dnfLocks(ctx context.Context) (map[string]string, error) {
	out, err := m.run(ctx, dnfEnv, "dnf", "-q", "versionlock", "list")
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Message, "No such command") {
			return map[string]string{}, nil
		}
		return nil, err
	}
	return parseVersionlock(out), nil
}

func (m *Manager) dnfKernels(ctx context.Context) ([]Kernel, error) {
	es, err := m.rpmQuery(ctx)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	locks, err := m.dnfLocks(ctx)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	return dnfKernelsFrom(es, m.running(), locks), nil
}

// rpmSet is the installed packages as "name-version-release.arch" (rpm
// installs several versions of installonly packages side by side).
func rpmSet(es []rpmEntry) map[string]rpmEntry {
	s := map[string]rpmEntry{}
	for _, e := range es {
		s[e.nvra()] = e
	}
	return s
}

func diffRPM(before, after map[string]rpmEntry) []Change {
	var out []Change
	for k, e := range after {
		if _, ok := before[k]; !ok {
			out = append(out, Change{Name: e.Name + "." + e.Arch, To: e.VR})
		}
	}
	for k, e := range before {
		if _, ok := after[k]; !ok {
			out = append(out, Change{Name: e.Name + "." + e.Arch, From: e.VR})
		}
	}
	sortChanges(out)
	return out
}

// splitArch splits "5.14.0-362.8.1.el9_3.x86_64" into version-release and arch.
func splitArch(release string) (vr, arch string) {
	for _, a := range []string{"x86_64", "aarch64", "ppc64le", "s390x", "noarch", "i686"} {
		if v, ok := strings.CutSuffix(release, "."+a); ok {
			return v, a
		}
	}
	return release, ""
}

func (m *Manager) dnfUpgrade(ctx context.Context, t Target) (*Result, error) {
	if m.Update && !t.DryRun {
		m.progress("running dnf makecache")
		if _, err := m.run(ctx, dnfEnv, "dnf", "-q", "-y", "makecache"); err != nil {
			return nil, fmt.Errorf("upgrade kernel: %w", err)
		}
	}
	before, err := m.rpmQuery(ctx)
	if err != nil {
		return nil, fmt.Errorf("upgrade kernel: %w", err)
	}
	vr, arch := t.Version, ""
	if t.Release != "" {
		vr, arch = splitArch(t.Release)
	}
	if arch == "" {
		_, arch = splitArch(m.running())
	}
	if arch == "" {
		out, err := m.run(ctx, dnfEnv, "rpm", "--eval", "%{_arch}")
		if err != nil {
			return nil, fmt.Errorf("upgrade kernel: %w", err)
		}
		arch = strings.TrimSpace(string(out))
	}
	if vr == "" {
		out, err := m.run(ctx, dnfEnv, "dnf", "-q", "repoquery", "--latest-limit=1", "--arch="+arch, "--qf", "%{version}-%{release}", "kernel-core")
		if err != nil {
			return nil, fmt.Errorf("upgrade kernel: newest kernel-core: %w", err)
		}
		lines := parseLines(out)
		if len(lines) == 0 {
			return nil, fmt.Errorf("upgrade kernel: no kernel-core for %s in the enabled repositories: %w", arch, ErrNotFound)
		}
		vr = lines[len(lines)-1]
	}
	release := vr + "." + arch
	asked := []Package{{Name: "kernel-core", Version: vr}}
	hasMeta := false
	for _, e := range before {
		hasMeta = hasMeta || e.Name == "kernel"
	}
	if hasMeta || t.Meta {
		asked = append(asked, Package{Name: "kernel", Version: vr})
	}
	res := &Result{Family: Dnf, Release: release, Asked: asked, DryRun: t.DryRun}
	m.progress("kernel %s: %s", release, packageList(asked))

	locks, err := m.dnfLocks(ctx)
	if err != nil {
		return res, fmt.Errorf("upgrade kernel: %w", err)
	}
	for _, p := range asked {
		if v, ok := locks[p.Name]; ok && v != vr {
			return res, fmt.Errorf("upgrade kernel: %s is versionlocked (dnf versionlock list); Stent does not override locks: run dnf versionlock delete %s to allow it: %w", p.Name, p.Name, ErrHeld)
		}
	}
	set := rpmSet(before)
	res.Already = true
	for _, p := range asked {
		if _, ok := set[p.Name+"-"+vr+"."+arch]; !ok {
			res.Already = false
		}
	}
	if res.Already {
		if !t.DryRun {
			res.Files, err = m.checkBootFiles(release)
		}
		return res, err
	}
	out, err := m.run(ctx, dnfEnv, "dnf", "-q", "repoquery", "--qf", "%{installsize}", "kernel-core-"+vr+"."+arch)
	if err != nil {
		return res, fmt.Errorf("upgrade kernel: %w", err)
	}
	lines := parseLines(out)
	if len(lines) == 0 {
		return res, fmt.Errorf("upgrade kernel: kernel-core-%s.%s is not in the enabled repositories: %w", vr, arch, ErrNotFound)
	}
	size, err := strconv.ParseUint(lines[0], 10, 64)
	if err != nil {
		return res, fmt.Errorf("upgrade kernel: installsize of kernel-core-%s: %q: %w", vr, lines[0], err)
	}
	if res.Space, err = m.checkSpace(size); err != nil {
		return res, fmt.Errorf("upgrade kernel: %w", err)
	}
	if !res.Space.OK {
		return res, fmt.Errorf("upgrade kernel %s: %w", release, spaceError(res.Space))
	}
	if t.DryRun {
		return res, nil
	}
	args := []string{"-y", "install"}
	for _, p := range asked {
		args = append(args, p.Name+"-"+vr+"."+arch)
	}
	m.progress("running dnf %s", strings.Join(args, " "))
	_, runErr := m.run(ctx, dnfEnv, "dnf", args...)
	after, err := m.rpmQuery(ctx)
	if err != nil {
		if runErr != nil {
			return res, fmt.Errorf("upgrade kernel: %w", runErr)
		}
		return res, fmt.Errorf("upgrade kernel: after install: %w", err)
	}
	res.Changes = diffRPM(set, rpmSet(after))
	if runErr != nil {
		return res, fmt.Errorf("upgrade kernel %s: %w", release, runErr)
	}
	afterSet := rpmSet(after)
	for _, p := range asked {
		if _, ok := afterSet[p.Name+"-"+vr+"."+arch]; !ok {
			return res, fmt.Errorf("upgrade kernel %s: dnf succeeded but rpm does not show %s-%s.%s installed: %w", release, p.Name, vr, arch, ErrIncomplete)
		}
	}
	if res.Files, err = m.checkBootFiles(release); err != nil {
		return res, fmt.Errorf("upgrade kernel %s: %w", release, err)
	}
	m.progress("installed: %s", changeList(res.Changes))
	return res, nil
}

// dnfRemove removes pkgs (name-version-release.arch) with dnf remove.
func (m *Manager) dnfRemove(ctx context.Context, pkgs []string, dryRun bool) error {
	if dryRun {
		return nil
	}
	if _, err := m.run(ctx, dnfEnv, "dnf", append([]string{"-y", "remove"}, pkgs...)...); err != nil {
		return err
	}
	after, err := m.rpmQuery(ctx)
	if err != nil {
		return err
	}
	set := rpmSet(after)
	for _, p := range pkgs {
		if _, ok := set[p]; ok {
			return fmt.Errorf("dnf succeeded but %s is still installed: %w", p, ErrIncomplete)
		}
	}
	return nil
}
