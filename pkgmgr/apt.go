package pkgmgr

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// aptEnv keeps apt, dpkg and debconf from asking anything.
var aptEnv = []string{"DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none", "NEEDRESTART_MODE=l", "LC_ALL=C"}

// aptOptions are given to every apt-get that changes packages: keep the
// installed configuration files without asking, wait for the dpkg lock
// only so long, never remove a package as a side effect.
func (m *Manager) aptOptions() []string {
	lt := m.LockTimeout
	if lt <= 0 {
		lt = DefaultLockTimeout
	}
	return []string{
		"-y", "-q",
		"-o", "Dpkg::Options::=--force-confdef",
		"-o", "Dpkg::Options::=--force-confold",
		"-o", "DPkg::Lock::Timeout=" + strconv.Itoa(int(lt.Seconds())),
		"-o", "APT::Get::Show-Versions=true",
	}
}

// dpkgQuery returns the package database's entries.
func (m *Manager) dpkgQuery(ctx context.Context) ([]dpkgEntry, error) {
	out, err := m.run(ctx, aptEnv, "dpkg-query", "-W", "-f="+dpkgFormat)
	if err != nil {
		return nil, err
	}
	return parseDpkgQuery(out)
}

// aptHeld returns the packages apt-mark shows as held.
func (m *Manager) aptHeld(ctx context.Context) (map[string]bool, error) {
	out, err := m.run(ctx, aptEnv, "apt-mark", "showhold")
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, l := range parseLines(out) {
		held[strings.TrimSuffix(l, ":"+archOf(l))] = true
	}
	return held, nil
}

// archOf returns the ":arch" qualifier of a package name, or "".
func archOf(name string) string {
	_, a, _ := strings.Cut(name, ":")
	return a
}

func (m *Manager) aptKernels(ctx context.Context) ([]Kernel, error) {
	es, err := m.dpkgQuery(ctx)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	held, err := m.aptHeld(ctx)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	return aptKernelsFrom(es, m.running(), held), nil
}

// aptFlavour returns the flavour of the metapackage to follow.
func (m *Manager) aptFlavour(ctx context.Context, es []dpkgEntry) (string, error) {
	if m.Flavour != "" {
		return m.Flavour, nil
	}
	if f := releaseFlavour(m.running()); f != "" {
		return f, nil
	}
	if ks := aptKernelsFrom(es, "", nil); len(ks) > 0 {
		if f := releaseFlavour(ks[0].Release); f != "" {
			return f, nil
		}
	}
	out, err := m.run(ctx, aptEnv, "dpkg", "--print-architecture")
	if err != nil {
		return "", fmt.Errorf("kernel flavour: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// aptCandidate returns apt's candidate version of pkg.
func (m *Manager) aptCandidate(ctx context.Context, pkg string) (string, error) {
	out, err := m.run(ctx, aptEnv, "apt-cache", "policy", pkg)
	if err != nil {
		return "", err
	}
	_, cand := policyCandidate(out)
	if cand == "" {
		return "", fmt.Errorf("%s has no installation candidate in the configured repositories: %w", pkg, ErrNotFound)
	}
	return cand, nil
}

// aptShow returns apt-cache show of pkg=version.
func (m *Manager) aptShow(ctx context.Context, pkg, version string) (map[string]string, []byte, error) {
	out, err := m.run(ctx, aptEnv, "apt-cache", "show", pkg+"="+version)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.Kind == nil {
			ce.Kind = ErrNotFound
		}
		return nil, nil, err
	}
	st := parseStanzas(out)
	if len(st) == 0 {
		return nil, nil, fmt.Errorf("apt-cache show %s=%s: nothing shown: %w", pkg, version, ErrNotFound)
	}
	return st[0], out, nil
}

// aptResolve works out the image package, its version and whether the
// metapackage goes along.
func (m *Manager) aptResolve(ctx context.Context, t Target, es []dpkgEntry) (release string, asked []Package, err error) {
	flavour, err := m.aptFlavour(ctx, es)
	if err != nil {
		return "", nil, err
	}
	meta := "linux-image-" + flavour
	metaInstalled := false
	for _, e := range es {
		if e.Name == meta && e.present() {
			metaInstalled = true
		}
	}
	var image, imageVer, metaVer string
	if t.Release != "" {
		release = t.Release
		image = "linux-image-" + release
		imageVer = t.Version
		if imageVer == "" {
			if imageVer, err = m.aptCandidate(ctx, image); err != nil {
				return "", nil, err
			}
		}
		// The metapackage goes along only at a version that depends on
		// exactly this image.
		if metaInstalled || t.Meta {
			if st, _, err := m.aptShow(ctx, meta, imageVer); err == nil {
				if p, v := dependsOnImage(st["Depends"]); p == image && (v == "" || v == imageVer) {
					metaVer = imageVer
				}
			}
			if metaVer == "" && t.Meta {
				return "", nil, fmt.Errorf("%s=%s does not depend on %s=%s: install the kernel without the metapackage, or ask for the metapackage's version: %w",
					meta, imageVer, image, imageVer, ErrNotFound)
			}
		}
	} else {
		metaVer = t.Version
		if metaVer == "" {
			if metaVer, err = m.aptCandidate(ctx, meta); err != nil {
				return "", nil, err
			}
		}
		st, _, err := m.aptShow(ctx, meta, metaVer)
		if err != nil {
			return "", nil, fmt.Errorf("metapackage %s version %s: %w", meta, metaVer, err)
		}
		image, imageVer = dependsOnImage(st["Depends"])
		if image == "" {
			return "", nil, fmt.Errorf("%s=%s depends on no kernel image package (Depends: %s)", meta, metaVer, st["Depends"])
		}
		release, _ = imageRelease(image)
		if imageVer == "" {
			if imageVer, err = m.aptCandidate(ctx, image); err != nil {
				return "", nil, err
			}
		}
		if !metaInstalled && !t.Meta {
			metaVer = ""
		}
	}
	asked = []Package{{Name: image, Version: imageVer}}
	if metaVer != "" {
		asked = append(asked, Package{Name: meta, Version: metaVer})
	}
	return release, asked, nil
}

func (m *Manager) aptUpgrade(ctx context.Context, t Target) (*Result, error) {
	if m.Update && !t.DryRun {
		m.progress("running apt-get update")
		// --error-on=any: apt-get update exits 0 when a repository
		// cannot be reached (it only warns); a kernel resolved from stale
		// lists is not what the plan asked for.
		if _, err := m.run(ctx, aptEnv, "apt-get", "-q", "--error-on=any", "-o", "DPkg::Lock::Timeout="+strconv.Itoa(int(m.lockSeconds())), "update"); err != nil {
			return nil, fmt.Errorf("upgrade kernel: %w", err)
		}
	}
	before, err := m.dpkgQuery(ctx)
	if err != nil {
		return nil, fmt.Errorf("upgrade kernel: %w", err)
	}
	release, asked, err := m.aptResolve(ctx, t, before)
	if err != nil {
		return nil, fmt.Errorf("upgrade kernel: %w", err)
	}
	res := &Result{Family: Apt, Release: release, Asked: asked, DryRun: t.DryRun}
	m.progress("kernel %s: %s", release, packageList(asked))

	held, err := m.aptHeld(ctx)
	if err != nil {
		return nil, fmt.Errorf("upgrade kernel: %w", err)
	}
	for _, p := range asked {
		if held[p.Name] {
			return res, fmt.Errorf("upgrade kernel: %s is held (apt-mark showhold); Stent does not override holds: run apt-mark unhold %s to allow it: %w", p.Name, p.Name, ErrHeld)
		}
	}
	snap := dpkgSnapshot(before)
	res.Already = true
	for _, p := range asked {
		if snap[p.Name] != p.Version {
			res.Already = false
		}
	}
	if res.Already {
		m.progress("already installed: %s", packageList(asked))
		if !t.DryRun {
			res.Files, err = m.checkBootFiles(release)
		}
		return res, err
	}

	size := uint64(0)
	if _, out, err := m.aptShow(ctx, asked[0].Name, asked[0].Version); err != nil {
		return res, fmt.Errorf("upgrade kernel: %w", err)
	} else if kib, err := installedSizeKiB(out); err != nil {
		return res, fmt.Errorf("upgrade kernel: %w", err)
	} else {
		size = kib * 1024
	}
	res.Space, err = m.checkSpace(size)
	if err != nil {
		return res, fmt.Errorf("upgrade kernel: %w", err)
	}
	m.progress("/boot: %d MiB free, about %d MiB needed", res.Space.BootFree>>20, res.Space.BootNeed>>20)
	if !res.Space.OK {
		return res, fmt.Errorf("upgrade kernel %s: %w", release, spaceError(res.Space))
	}

	args := append([]string{"install"}, m.aptOptions()...)
	args = append(args, "--no-remove")
	for _, p := range asked {
		args = append(args, p.String())
	}
	if t.DryRun {
		out, err := m.run(ctx, aptEnv, "apt-get", append([]string{"-s"}, args...)...)
		if err != nil {
			return res, fmt.Errorf("upgrade kernel (simulated): %w", err)
		}
		res.Changes = parseAptSimulation(out)
		return res, nil
	}
	m.progress("running apt-get install %s", packageList(asked))
	_, runErr := m.run(ctx, aptEnv, "apt-get", args...)
	after, err := m.dpkgQuery(ctx)
	if err != nil {
		if runErr != nil {
			return res, fmt.Errorf("upgrade kernel: %w", runErr)
		}
		return res, fmt.Errorf("upgrade kernel: after install: %w", err)
	}
	res.Changes = diffPackages(snap, dpkgSnapshot(after))
	for _, e := range after {
		if e.present() && !e.installed() && strings.TrimSpace(e.Status) != "rc" {
			res.Incomplete = append(res.Incomplete, e.Name+" ("+strings.TrimSpace(e.Status)+")")
		}
	}
	if runErr != nil {
		return res, fmt.Errorf("upgrade kernel %s: %w", release, runErr)
	}
	afterSnap := dpkgSnapshot(after)
	for _, p := range asked {
		if afterSnap[p.Name] != p.Version {
			return res, fmt.Errorf("upgrade kernel %s: apt-get succeeded but the package database shows %s at %q, not %s: %w",
				release, p.Name, afterSnap[p.Name], p.Version, ErrIncomplete)
		}
	}
	if len(res.Incomplete) > 0 {
		return res, fmt.Errorf("upgrade kernel %s: packages not fully installed: %s (run dpkg --configure -a): %w",
			release, strings.Join(res.Incomplete, ", "), ErrIncomplete)
	}
	res.Files, err = m.checkBootFiles(release)
	if err != nil {
		return res, fmt.Errorf("upgrade kernel %s: %w", release, err)
	}
	m.progress("installed: %s", changeList(res.Changes))
	return res, nil
}

func (m *Manager) lockSeconds() int64 {
	if m.LockTimeout <= 0 {
		return int64(DefaultLockTimeout.Seconds())
	}
	return int64(m.LockTimeout.Seconds())
}

// bootFiles are the files a release must have in /boot to be bootable.
func (m *Manager) bootFiles(release string) []string {
	if m.Family == Dnf {
		return []string{"vmlinuz-" + release, "initramfs-" + release + ".img"}
	}
	return []string{"vmlinuz-" + release, "initrd.img-" + release}
}

// checkBootFiles checks that the release's kernel image and initramfs
// exist in /boot and are not empty.
func (m *Manager) checkBootFiles(release string) ([]string, error) {
	var files []string
	for _, f := range m.bootFiles(release) {
		p := filepath.Join(m.root(), "boot", f)
		size, err := fileSize(p)
		if err != nil {
			return files, fmt.Errorf("%s: %v: %w", "/boot/"+f, err, ErrIncomplete)
		}
		if size == 0 {
			return files, fmt.Errorf("/boot/%s is empty: %w", f, ErrIncomplete)
		}
		files = append(files, "/boot/"+f)
	}
	return files, nil
}

func packageList(ps []Package) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

func changeList(cs []Change) string {
	if len(cs) == 0 {
		return "nothing"
	}
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}
