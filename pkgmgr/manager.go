package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Family names a package manager.
type Family string

// The package managers pkgmgr drives.
const (
	Apt Family = "apt" // Debian, Ubuntu: apt-get, apt-cache, apt-mark, dpkg-query
	Dnf Family = "dnf" // RHEL, Fedora, Rocky, Alma, CentOS Stream: dnf, rpm
)

// Detect reads root/etc/os-release (then root/usr/lib/os-release) and
// returns the package manager of its ID or ID_LIKE.
func Detect(root string) (Family, error) {
	var data []byte
	var err error
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		if data, err = os.ReadFile(filepath.Join(root, p)); err == nil {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("detect package manager: %w", err)
	}
	return detectOSRelease(data)
}

func detectOSRelease(data []byte) (Family, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		vals[k] = strings.Trim(v, `"'`)
	}
	ids := append([]string{vals["ID"]}, strings.Fields(vals["ID_LIKE"])...)
	for _, id := range ids {
		switch strings.ToLower(id) {
		case "debian", "ubuntu":
			return Apt, nil
		case "rhel", "fedora", "centos", "rocky", "almalinux", "ol", "amzn":
			return Dnf, nil
		}
	}
	return "", fmt.Errorf("os-release ID %q, ID_LIKE %q: %w (Stent drives apt on Debian/Ubuntu and dnf on the RHEL family)",
		vals["ID"], vals["ID_LIKE"], ErrNotSupported)
}

// DefaultLockTimeout is how long apt waits for the dpkg lock.
const DefaultLockTimeout = 5 * time.Minute

// Manager drives one host's package manager. Set its fields, or use New.
type Manager struct {
	Family Family
	Runner Runner
	// Root is the filesystem root: /boot, /proc and /etc are read under
	// it ("/" on a real host). Commands always act on the live system.
	Root string
	// Update runs apt-get update (dnf makecache) before resolving what to
	// install.
	Update bool
	// LockTimeout bounds the wait for the dpkg lock (apt's
	// DPkg::Lock::Timeout). dnf waits for its lock without a bound of its
	// own; the Runner's timeout bounds it.
	LockTimeout time.Duration
	// Running is the running kernel's release; empty means
	// Root/proc/sys/kernel/osrelease.
	Running string
	// Flavour is the kernel flavour of apt's metapackage
	// (linux-image-FLAVOUR: "amd64", "cloud-amd64", "generic"); empty
	// means the running kernel's, else the newest installed one's, else
	// the dpkg architecture.
	Flavour string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// statfs is replaced by tests.
	statfs func(path string) (free uint64, dev uint64, err error)
}

// New returns the Manager for the host under root, with ExecRunner,
// Update on and the default lock timeout.
func New(root string) (*Manager, error) {
	fam, err := Detect(root)
	if err != nil {
		return nil, err
	}
	return &Manager{Family: fam, Runner: ExecRunner{}, Root: root, Update: true, LockTimeout: DefaultLockTimeout}, nil
}

// Package is one package at one version.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func (p Package) String() string { return p.Name + "=" + p.Version }

// Change is one package whose installed version changed.
type Change struct {
	Name string `json:"name"`
	From string `json:"from,omitempty"` // empty: newly installed
	To   string `json:"to,omitempty"`   // empty: removed
}

func (c Change) String() string {
	switch {
	case c.From == "":
		return c.Name + "=" + c.To
	case c.To == "":
		return c.Name + " " + c.From + " removed"
	}
	return c.Name + " " + c.From + " -> " + c.To
}

// Kernel is one installed kernel.
type Kernel struct {
	Release string `json:"release"` // uname -r: 6.1.0-57-amd64, 5.14.0-362.8.1.el9_3.x86_64
	Package string `json:"package"` // linux-image-6.1.0-57-amd64, kernel-core
	Version string `json:"version"` // the package's version: 6.1.192-3, 5.14.0-362.8.1.el9_3
	// Status is "installed", or the package database's word for a
	// package that is not fully installed (dpkg's status abbreviation
	// such as "iF", "iU", "rc").
	Status  string `json:"status"`
	Running bool   `json:"running"`
	Held    bool   `json:"held"`
	// MetaTarget: the metapackage (linux-image-amd64) depends on it.
	MetaTarget bool `json:"meta_target,omitempty"`
	// Packages are all installed packages of this release (image,
	// modules, headers), the ones cleanup removes together.
	Packages []string `json:"packages"`
}

// Installed reports whether the kernel's package is fully installed.
func (k Kernel) Installed() bool { return k.Status == "installed" }

// Target is the kernel to install. Empty fields mean the newest available.
type Target struct {
	// Release is a kernel release (6.1.0-57-amd64; on dnf
	// 5.14.0-362.8.1.el9_3.x86_64).
	Release string
	// Version is a package version (6.1.192-3 for the apt image and
	// metapackage; 5.14.0-362.8.1.el9_3 on dnf).
	Version string
	// Meta also installs the metapackage (linux-image-FLAVOUR) when it is
	// not installed yet; an installed one is always moved along.
	Meta bool
	// DryRun resolves, checks space and simulates, changing nothing.
	DryRun bool
}

// SpaceCheck is the free-space check made before installing.
type SpaceCheck struct {
	BootPath string `json:"boot_path"`
	BootFree uint64 `json:"boot_free_bytes"`
	BootNeed uint64 `json:"boot_need_bytes"` // kernel image + initramfs estimate (+ the package when /boot shares its filesystem)
	RootPath string `json:"root_path,omitempty"`
	RootFree uint64 `json:"root_free_bytes,omitempty"`
	RootNeed uint64 `json:"root_need_bytes,omitempty"` // the package's installed size, when not on /boot's filesystem
	SameFS   bool   `json:"same_filesystem"`
	Estimate string `json:"estimate"` // how BootNeed was estimated
	OK       bool   `json:"ok"`
}

// Result is what Upgrade did, or would do.
type Result struct {
	Family  Family    `json:"family"`
	Release string    `json:"release"`
	Asked   []Package `json:"asked"` // the packages and versions given to the package manager
	// Already: every asked package was installed at its version before.
	Already bool        `json:"already_installed"`
	DryRun  bool        `json:"dry_run"`
	Space   *SpaceCheck `json:"space,omitempty"`
	// Changes are read from the package database before and after (on a
	// dry run: the package manager's simulation).
	Changes []Change `json:"changes"`
	// Files are the new kernel's /boot files checked afterwards.
	Files []string `json:"files,omitempty"`
	// Incomplete lists packages the package database shows as not fully
	// installed after a failure.
	Incomplete []string `json:"incomplete,omitempty"`
}

func (m *Manager) progress(format string, args ...any) {
	if m.Progress != nil {
		fmt.Fprintf(m.Progress, format+"\n", args...)
	}
}

func (m *Manager) root() string {
	if m.Root == "" {
		return "/"
	}
	return m.Root
}

// RunningRelease returns the running kernel's release: Running, else
// Root/proc/sys/kernel/osrelease; empty when neither says.
func (m *Manager) RunningRelease() string { return m.running() }

// running returns the running kernel's release.
func (m *Manager) running() string {
	if m.Running != "" {
		return m.Running
	}
	data, err := os.ReadFile(filepath.Join(m.root(), "proc/sys/kernel/osrelease"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// run runs one command, turning a failure into a *CommandError.
func (m *Manager) run(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	if m.Runner == nil {
		return nil, fmt.Errorf("pkgmgr: Manager.Runner is nil")
	}
	stdout, stderr, err := m.Runner.Run(ctx, name, args, env)
	if err != nil {
		if ctx.Err() != nil {
			return stdout, fmt.Errorf("%s: %w", commandLine(name, args), ctx.Err())
		}
		return stdout, commandError(name, args, stdout, stderr, err)
	}
	return stdout, nil
}

// Kernels lists the installed kernels, newest first.
func (m *Manager) Kernels(ctx context.Context) ([]Kernel, error) {
	switch m.Family {
	case Apt:
		return m.aptKernels(ctx)
	case Dnf:
		return m.dnfKernels(ctx)
	}
	return nil, fmt.Errorf("kernels: family %q: %w", m.Family, ErrNotSupported)
}

// Upgrade installs the target kernel (see the package documentation for
// the checks). On a failure the returned Result, when not nil, says what
// the package database shows (Incomplete).
func (m *Manager) Upgrade(ctx context.Context, t Target) (*Result, error) {
	switch m.Family {
	case Apt:
		return m.aptUpgrade(ctx, t)
	case Dnf:
		return m.dnfUpgrade(ctx, t)
	}
	return nil, fmt.Errorf("upgrade: family %q: %w", m.Family, ErrNotSupported)
}

// diffPackages compares two package database snapshots (name to version).
func diffPackages(before, after map[string]string) []Change {
	var out []Change
	for name, v := range after {
		if old, ok := before[name]; !ok || old != v {
			out = append(out, Change{Name: name, From: before[name], To: v})
		}
	}
	for name, v := range before {
		if _, ok := after[name]; !ok {
			out = append(out, Change{Name: name, From: v})
		}
	}
	sortChanges(out)
	return out
}
