package collect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	debversion "github.com/knqyf263/go-deb-version"
	rpmversion "github.com/knqyf263/go-rpm-version"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/kinfo"
)

// corePackages are packages whose update after boot calls for a reboot:
// the C library and the init system are in every process or cannot be
// restarted alone, and microcode loads at boot.
var corePackages = map[string]bool{
	// Debian and Ubuntu
	"libc6": true, "systemd": true, "dbus": true, "dbus-broker": true, "intel-microcode": true, "amd64-microcode": true,
	// RPM distributions
	"glibc": true, "dbus-daemon": true, "linux-firmware": true, "microcode_ctl": true,
}

var (
	debianInProcVersion = regexp.MustCompile(`Debian (\S+) \((\d{4}-\d{2}-\d{2})\)`)
	ubuntuSignature     = regexp.MustCompile(`^Ubuntu (\S+)-[a-z0-9]+ (\d+\.\d+(?:\.\d+)?)`)
)

// Host inventories the host whose filesystem root is root ("/" on the
// host itself; a mounted tree or a test fixture otherwise): /proc, /sys,
// /etc, /boot and the package database are read under root. runDir is the
// runtime's per-boot state folder (where applied live patch manifests are
// kept), used as given, not under root, as the runtime uses it; now is the
// collection time.
func Host(ctx context.Context, root, runDir string, now time.Time) (*inventory.Inventory, error) {
	inv := &inventory.Inventory{SchemaVersion: inventory.SchemaVersion, CollectedAt: now.UTC(), Sources: map[string]string{}, LivePatches: []inventory.LivePatch{}}
	read := func(rel string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		return strings.TrimSpace(string(b)), err
	}
	// Host name.
	if h, err := read("proc/sys/kernel/hostname"); err == nil && h != "" {
		inv.Hostname = h
	} else if root == "/" {
		inv.Hostname, _ = os.Hostname()
	}
	if inv.Hostname == "" {
		return nil, errors.New("host name: /proc/sys/kernel/hostname is empty or unreadable")
	}
	// Distribution.
	osr, src, err := readOSRelease(root)
	if err != nil {
		return nil, err
	}
	inv.OS = osr
	inv.Sources["os"] = src
	// Running kernel.
	if inv.Kernel.Release, err = read("proc/sys/kernel/osrelease"); err != nil {
		return nil, fmt.Errorf("kernel release: %w", err)
	}
	if inv.Kernel.Version, err = read("proc/version"); err != nil {
		return nil, fmt.Errorf("kernel version: %w", err)
	}
	boot, err := bootTime(root)
	if err != nil {
		return nil, err
	}
	inv.Kernel.BootTime = boot
	inv.Kernel.UptimeDays = round2(now.Sub(boot).Hours() / 24)
	// Packages.
	var pkgs []inventory.Package
	var kernelSource map[string]string
	switch inv.OS.Family {
	case "deb":
		pkgs, kernelSource, err = debPackages(root, inv)
	case "rpm":
		pkgs, err = rpmPackages(ctx, root, inv)
	}
	if err != nil {
		return nil, err
	}
	if err := kernelPackageVersion(root, inv, pkgs, kernelSource); err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if corePackages[p.Name] {
			inv.CorePackages = append(inv.CorePackages, p)
		}
	}
	if d := inv.Kernel.BuildDate; d != "" {
		if t, err := time.Parse("2006-01-02", d); err == nil {
			age := round2(now.Sub(t).Hours() / 24)
			inv.Kernel.BuildAgeDays = &age
		}
	}
	// /boot.
	inv.Boot = bootUsage(root)
	// Reboot.
	rebootReasons(root, inv)
	// Processes.
	procs, unreadable, err := staleProcesses(root)
	if err != nil {
		inv.Warnings = append(inv.Warnings, err.Error())
	}
	inv.StaleProcesses = procs
	if unreadable > 0 {
		inv.Warnings = append(inv.Warnings, fmt.Sprintf("%d processes' maps could not be read (run as root to see all)", unreadable))
	}
	// Live patches.
	lps, warns, err := appliedPatches(root, runDir)
	if err != nil {
		return nil, err
	}
	if lps != nil {
		inv.LivePatches = lps
	}
	inv.Warnings = append(inv.Warnings, warns...)
	inv.Sources["live_patches"] = "klp (/sys/kernel/livepatch) and the runtime's records in " + filepath.Join(runDir, "applied")
	return inv, inv.Validate()
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func readOSRelease(root string) (inventory.OS, string, error) {
	d, err := kinfo.ReadDistro(root)
	if err != nil {
		return inventory.OS{}, "", err
	}
	src := d.Source
	o := inventory.OS{ID: d.ID, VersionID: d.VersionID, Codename: d.Codename, PrettyName: d.PrettyName, IDLike: d.IDLike}
	if o.ID == "" {
		return inventory.OS{}, "", fmt.Errorf("distribution: %s has no ID", src)
	}
	for _, id := range append([]string{o.ID}, o.IDLike...) {
		switch id {
		case "debian", "ubuntu":
			o.Family = "deb"
		case "rhel", "fedora", "centos", "suse", "opensuse", "sles":
			o.Family = "rpm"
		}
		if o.Family != "" {
			break
		}
	}
	if o.Family == "" {
		return inventory.OS{}, "", fmt.Errorf("distribution %q (%s): unknown package family; Stent knows Debian-like (deb) and Red Hat- or SUSE-like (rpm) systems", o.ID, src)
	}
	return o, src, nil
}

func bootTime(root string) (time.Time, error) {
	data, err := os.ReadFile(filepath.Join(root, "proc/stat"))
	if err != nil {
		return time.Time{}, fmt.Errorf("boot time: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("boot time: /proc/stat btime %q: %w", v, err)
			}
			return time.Unix(s, 0).UTC(), nil
		}
	}
	return time.Time{}, errors.New("boot time: /proc/stat has no btime line")
}

func debPackages(root string, inv *inventory.Inventory) ([]inventory.Package, map[string]string, error) {
	path := filepath.Join(root, "var/lib/dpkg/status")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("packages: %w", err)
	}
	dp, err := parseDpkgStatus("/var/lib/dpkg/status", data)
	if err != nil {
		return nil, nil, fmt.Errorf("packages: %w", err)
	}
	inv.Sources["packages"] = "dpkg status file /var/lib/dpkg/status (install times from /var/log/dpkg.log or /var/lib/dpkg/info/*.list)"
	times := dpkgInstallTimes(root, dp)
	sources := map[string]string{}
	var out []inventory.Package
	for _, p := range dp {
		pk := inventory.Package{Name: p.Name, Version: p.Version, Arch: p.Arch}
		if t, ok := times[p.Name]; ok {
			t := t
			pk.InstalledAt = &t
		}
		if rel := debianKernelRelease(p.Name); rel != "" {
			pk.Release = rel
			if _, err := debversion.NewVersion(p.Version); err != nil {
				return nil, nil, fmt.Errorf("packages: %s: version %q: %w", p.Name, p.Version, err)
			}
			pk.Running = rel == inv.Kernel.Release
			inv.KernelPackages = append(inv.KernelPackages, pk)
			sources[rel] = sourcePackage(p.Source)
		} else if isDebianKernelMeta(p.Name) {
			inv.Metapackages = append(inv.Metapackages, pk)
		}
		out = append(out, pk)
	}
	sort.SliceStable(inv.KernelPackages, func(i, j int) bool {
		a, _ := debversion.NewVersion(inv.KernelPackages[i].Version)
		b, _ := debversion.NewVersion(inv.KernelPackages[j].Version)
		return a.LessThan(b)
	})
	if n := len(inv.KernelPackages); n > 0 {
		inv.NewestKernel = inv.KernelPackages[n-1].Release
	}
	return out, sources, nil
}

// rpmKernelNames are the packages that carry an RPM distribution's kernel
// image, most specific first.
var rpmKernelNames = []string{"kernel-core", "kernel-default", "kernel", "kernel-uek-core", "kernel-uek"}

func rpmPackages(ctx context.Context, root string, inv *inventory.Inventory) ([]inventory.Package, error) {
	var hs []rpmHeader
	sqlitePath := filepath.Join(root, "var/lib/rpm/rpmdb.sqlite")
	if _, err := os.Stat(sqlitePath); err == nil {
		if hs, err = readRPMDBSqlite(ctx, sqlitePath); err != nil {
			return nil, fmt.Errorf("packages: %w", err)
		}
		inv.Sources["packages"] = "sqlite rpmdb /var/lib/rpm/rpmdb.sqlite, read directly"
	} else if _, lerr := exec.LookPath("rpm"); root == "/" && lerr == nil {
		if hs, err = readRPMQuery(ctx); err != nil {
			return nil, fmt.Errorf("packages: %w", err)
		}
		inv.Sources["packages"] = "rpm -qa (rpmdb not in the sqlite format)"
	} else {
		return nil, fmt.Errorf("packages: no /var/lib/rpm/rpmdb.sqlite under %s, and the rpm tool can only be asked about the real root", root)
	}
	kernelName := ""
	present := map[string]bool{}
	for _, h := range hs {
		present[h.Name] = true
	}
	for _, n := range rpmKernelNames {
		if present[n] {
			kernelName = n
			break
		}
	}
	var out []inventory.Package
	for _, h := range hs {
		pk := inventory.Package{Name: h.Name, Version: h.evr(), Arch: h.Arch}
		if !h.InstallTime.IsZero() {
			t := h.InstallTime
			pk.InstalledAt = &t
		}
		if h.Name == kernelName {
			pk.Release = h.Version + "-" + h.Release + "." + h.Arch
			pk.Running = pk.Release == inv.Kernel.Release
			inv.KernelPackages = append(inv.KernelPackages, pk)
		} else if h.Name == "kernel" && kernelName != "kernel" {
			inv.Metapackages = append(inv.Metapackages, pk)
		}
		out = append(out, pk)
	}
	sort.SliceStable(inv.KernelPackages, func(i, j int) bool {
		return rpmversion.NewVersion(inv.KernelPackages[i].Version).LessThan(rpmversion.NewVersion(inv.KernelPackages[j].Version))
	})
	if n := len(inv.KernelPackages); n > 0 {
		inv.NewestKernel = inv.KernelPackages[n-1].Release
	}
	return out, nil
}

// kernelPackageVersion finds the package version of the running kernel:
// on Debian from /proc/version ("Debian 6.1.192-2 (2026-11-16)"), which
// tells the build actually running even when the package was since
// replaced; on Ubuntu from /proc/version_signature; on RPM distributions
// from the release string, checked against the rpmdb.
func kernelPackageVersion(root string, inv *inventory.Inventory, pkgs []inventory.Package, sources map[string]string) error {
	k := &inv.Kernel
	var running *inventory.Package
	for i := range inv.KernelPackages {
		if inv.KernelPackages[i].Release == k.Release {
			running = &inv.KernelPackages[i]
		}
	}
	if running != nil {
		k.Package = running.Name
	}
	switch inv.OS.Family {
	case "deb":
		k.SourcePackage = "linux"
		if s := sources[k.Release]; s != "" {
			k.SourcePackage = s
		}
		if m := debianInProcVersion.FindStringSubmatch(k.Version); m != nil {
			k.PackageVersion, k.BuildDate = m[1], m[2]
			if _, err := debversion.NewVersion(m[1]); err != nil {
				return fmt.Errorf("kernel: /proc/version names package version %q: %w", m[1], err)
			}
			k.Upstream = debianUpstream(m[1])
			return nil
		}
		if sig, err := os.ReadFile(filepath.Join(root, "proc/version_signature")); err == nil {
			if m := ubuntuSignature.FindStringSubmatch(strings.TrimSpace(string(sig))); m != nil {
				k.PackageVersion, k.Upstream = m[1], m[2]
				return nil
			}
		}
		if running != nil {
			k.PackageVersion = running.Version
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("kernel: /proc/version names no package version; assuming the installed %s %s is the build running", running.Name, running.Version))
			if inv.OS.ID == "debian" {
				k.Upstream = debianUpstream(running.Version)
			}
			return nil
		}
		return fmt.Errorf("kernel %s: no package version in /proc/version and no linux-image-%s package installed: Stent cannot tell which fixes this kernel carries (not a distribution kernel?)", k.Release, k.Release)
	case "rpm":
		k.SourcePackage = "kernel"
		rel := k.Release
		if i := strings.LastIndexByte(rel, '.'); i > 0 {
			switch rel[i+1:] {
			case "x86_64", "aarch64", "ppc64le", "s390x", "i686", "noarch":
				rel = rel[:i]
			}
		}
		if strings.Count(rel, "-") < 1 {
			return fmt.Errorf("kernel release %q: want VERSION-RELEASE[.ARCH]", k.Release)
		}
		k.PackageVersion = rel
		if running != nil && !strings.HasSuffix(running.Version, rel) {
			return fmt.Errorf("kernel release %q does not match the installed %s %s", k.Release, running.Name, running.Version)
		}
		if running == nil {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("kernel %s: no installed kernel package carries it", k.Release))
		}
	}
	return nil
}

// debianUpstream returns the upstream part of a Debian linux version
// ("6.1.192-2" → "6.1.192"), or "" when it does not look like one.
func debianUpstream(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexAny(v, "~+"); i >= 0 {
		v = v[:i]
	}
	if strings.Trim(v, "0123456789.") != "" || strings.Count(v, ".") < 1 {
		return ""
	}
	return v
}

func bootUsage(root string) inventory.Boot {
	b := inventory.Boot{Path: "/boot"}
	dir := filepath.Join(root, "boot")
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		bs := uint64(st.Bsize)
		b.TotalBytes = st.Blocks * bs
		b.FreeBytes = st.Bavail * bs
		b.UsedBytes = (st.Blocks - st.Bfree) * bs
	}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "vmlinuz-") {
				b.Images = append(b.Images, e.Name())
			}
		}
	}
	return b
}

func rebootReasons(root string, inv *inventory.Inventory) {
	r := &inv.Reboot
	add := func(code, detail string, pkgs ...string) {
		r.Reasons = append(r.Reasons, inventory.RebootReason{Code: code, Detail: detail, Packages: pkgs})
	}
	var running *inventory.Package
	for i := range inv.KernelPackages {
		if inv.KernelPackages[i].Release == inv.Kernel.Release {
			running = &inv.KernelPackages[i]
		}
	}
	switch {
	case running == nil && len(inv.KernelPackages) > 0:
		add(inventory.ReasonRunningRemoved, fmt.Sprintf("the running kernel %s is no longer installed", inv.Kernel.Release))
	case running != nil && running.Version != inv.Kernel.PackageVersion && inv.OS.Family == "deb":
		add(inventory.ReasonSameABIRebuild, fmt.Sprintf("%s was replaced by version %s; the running build is %s", running.Name, running.Version, inv.Kernel.PackageVersion), running.Name)
	}
	if inv.NewestKernel != "" && inv.NewestKernel != inv.Kernel.Release {
		if np := inv.NewestPackage(); np != nil && (running == nil || newer(inv.OS.Family, np.Version, running.Version)) {
			add(inventory.ReasonNewerKernel, fmt.Sprintf("running %s, newest installed is %s (%s)", inv.Kernel.Release, np.Release, np.Version), np.Name)
		}
	}
	for _, p := range []string{"var/run/reboot-required", "run/reboot-required"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			var pkgs []string
			if b, err := os.ReadFile(filepath.Join(root, p+".pkgs")); err == nil {
				seen := map[string]bool{}
				for _, f := range strings.Fields(string(b)) {
					if !seen[f] {
						seen[f] = true
						pkgs = append(pkgs, f)
					}
				}
			}
			add(inventory.ReasonRequiredFile, "/"+p+" exists", pkgs...)
			break
		}
	}
	var core []string
	for _, p := range inv.CorePackages {
		if p.InstalledAt != nil && p.InstalledAt.After(inv.Kernel.BootTime) {
			core = append(core, p.Name)
		}
	}
	if len(core) > 0 {
		add(inventory.ReasonCorePackage, fmt.Sprintf("updated after boot (%s): %s", inv.Kernel.BootTime.Format(time.RFC3339), strings.Join(core, ", ")), core...)
	}
	r.Required = len(r.Reasons) > 0
}

func newer(family, a, b string) bool {
	if family == "rpm" {
		return rpmversion.NewVersion(a).Compare(rpmversion.NewVersion(b)) > 0
	}
	va, err1 := debversion.NewVersion(a)
	vb, err2 := debversion.NewVersion(b)
	return err1 == nil && err2 == nil && va.GreaterThan(vb)
}
