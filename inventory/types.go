package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// SchemaVersion is the version of the inventory JSON this package writes.
// Decode accepts exactly this version: a planner must not guess at a
// format it does not know.
const SchemaVersion = 1

// Inventory is what Stent knows about one host.
type Inventory struct {
	SchemaVersion  int               `json:"schema_version"`
	Hostname       string            `json:"hostname"`
	CollectedAt    time.Time         `json:"collected_at"`
	OS             OS                `json:"os"`
	Kernel         Kernel            `json:"kernel"`
	KernelPackages []Package         `json:"kernel_packages"` // installed kernel images, oldest first
	Metapackages   []Package         `json:"kernel_metapackages,omitempty"`
	NewestKernel   string            `json:"newest_kernel"` // release of the newest installed kernel
	Boot           Boot              `json:"boot"`
	Reboot         Reboot            `json:"reboot"`
	CorePackages   []Package         `json:"core_packages,omitempty"` // glibc, systemd, microcode, ... with install times
	StaleProcesses []Process         `json:"stale_processes,omitempty"`
	LivePatches    []LivePatch       `json:"live_patches"`
	Sources        map[string]string `json:"sources,omitempty"` // where each part came from, e.g. "packages": "dpkg status file"
	Warnings       []string          `json:"warnings,omitempty"`
}

// OS is the distribution, from /etc/os-release.
type OS struct {
	ID         string   `json:"id"`                   // "debian", "rocky", ...
	IDLike     []string `json:"id_like,omitempty"`    // "rhel", "fedora"
	VersionID  string   `json:"version_id,omitempty"` // "12", "9.3"
	Codename   string   `json:"codename,omitempty"`   // "bookworm"
	PrettyName string   `json:"pretty_name,omitempty"`
	Family     string   `json:"family"` // "deb" or "rpm": how packages are versioned
}

// Kernel is the running kernel.
type Kernel struct {
	Release        string    `json:"release"`                   // /proc/sys/kernel/osrelease: "6.1.0-56-amd64"
	Version        string    `json:"version"`                   // /proc/version, whole
	Package        string    `json:"package,omitempty"`         // "linux-image-6.1.0-56-amd64", "kernel-core"
	PackageVersion string    `json:"package_version,omitempty"` // "6.1.192-2"; RPM: "5.14.0-362.8.1.el9_3"
	SourcePackage  string    `json:"source_package,omitempty"`  // "linux", "kernel"
	Upstream       string    `json:"upstream,omitempty"`        // upstream version it is built from: "6.1.192"
	BuildDate      string    `json:"build_date,omitempty"`      // from /proc/version when it says: "2026-11-16"
	BootTime       time.Time `json:"boot_time"`                 // /proc/stat btime
	UptimeDays     float64   `json:"uptime_days"`               // days since boot at CollectedAt: how long this kernel has run
	BuildAgeDays   *float64  `json:"build_age_days,omitempty"`  // days since BuildDate at CollectedAt
}

// Package is an installed package.
type Package struct {
	Name        string     `json:"name"`
	Version     string     `json:"version"`
	Arch        string     `json:"arch,omitempty"`
	Release     string     `json:"kernel_release,omitempty"` // for kernel images: the uname -r it boots
	InstalledAt *time.Time `json:"installed_at,omitempty"`
	Running     bool       `json:"running,omitempty"`
}

// Boot is the use of the /boot file system.
type Boot struct {
	Path       string   `json:"path"`
	TotalBytes uint64   `json:"total_bytes"`
	UsedBytes  uint64   `json:"used_bytes"`
	FreeBytes  uint64   `json:"free_bytes"`
	Images     []string `json:"images,omitempty"` // vmlinuz-* names
}

// Reboot says whether the host needs a reboot and why.
type Reboot struct {
	Required bool           `json:"required"`
	Reasons  []RebootReason `json:"reasons,omitempty"`
}

// Reason codes for RebootReason.
const (
	ReasonNewerKernel    = "newer-kernel-installed" // running older than the newest installed kernel
	ReasonSameABIRebuild = "same-abi-rebuild"       // the package of the running release was replaced by another build
	ReasonRequiredFile   = "reboot-required-file"   // /var/run/reboot-required exists
	ReasonCorePackage    = "core-package-updated"   // glibc, systemd, microcode, ... installed after boot
	ReasonRunningRemoved = "running-kernel-removed" // the running kernel's package is no longer installed
)

// RebootReason is one reason for a reboot.
type RebootReason struct {
	Code     string   `json:"code"`
	Detail   string   `json:"detail"`
	Packages []string `json:"packages,omitempty"`
}

// Process is a process still mapping deleted or replaced libraries: it
// needs a restart (of its service), not a reboot.
type Process struct {
	PID       int      `json:"pid"`
	Comm      string   `json:"comm"`
	Unit      string   `json:"unit,omitempty"` // systemd unit, from /proc/PID/cgroup
	Libraries []string `json:"libraries"`      // "path (deleted)" or "path (replaced)"
}

// LivePatch is a live patch applied to the running kernel.
type LivePatch struct {
	Name          string     `json:"name"`
	Enabled       bool       `json:"enabled"`
	Transition    bool       `json:"transition,omitempty"` // still moving tasks to the patched code
	CVEs          []string   `json:"cves"`
	KernelRelease string     `json:"kernel_release,omitempty"`
	AppliedAt     *time.Time `json:"applied_at,omitempty"`
	Manifest      bool       `json:"manifest"` // false: found in sysfs but no manifest, so its CVEs are unknown
}

// ErrSchema is matched by errors about the schema version.
var ErrSchema = errors.New("unsupported inventory schema")

// Decode reads one inventory and checks what a planner relies on. name
// names the input in errors.
func Decode(name string, r io.Reader) (*Inventory, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", name, err)
	}
	var probe struct {
		SchemaVersion *int `json:"schema_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", name, err)
	}
	if probe.SchemaVersion == nil {
		return nil, fmt.Errorf("inventory %s: schema_version: missing required field: %w", name, ErrSchema)
	}
	if *probe.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("inventory %s: schema_version %d, this stent reads %d: %w", name, *probe.SchemaVersion, SchemaVersion, ErrSchema)
	}
	var inv Inventory
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inv); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", name, err)
	}
	if err := inv.Validate(); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", name, err)
	}
	return &inv, nil
}

// Validate checks the fields a planner needs.
func (inv *Inventory) Validate() error {
	switch {
	case inv.Hostname == "":
		return errors.New("hostname: missing required field")
	case inv.OS.ID == "":
		return errors.New("os.id: missing required field")
	case inv.OS.Family != "deb" && inv.OS.Family != "rpm":
		return fmt.Errorf("os.family: want deb or rpm, got %q", inv.OS.Family)
	case inv.Kernel.Release == "":
		return errors.New("kernel.release: missing required field")
	case inv.Kernel.PackageVersion == "":
		return errors.New("kernel.package_version: missing required field (the running kernel's package version is needed to tell what it fixes)")
	case inv.Kernel.BootTime.IsZero():
		return errors.New("kernel.boot_time: missing required field")
	}
	for i, p := range inv.KernelPackages {
		if p.Name == "" || p.Version == "" {
			return fmt.Errorf("kernel_packages[%d]: name and version are required", i)
		}
	}
	for i, lp := range inv.LivePatches {
		if lp.Name == "" {
			return fmt.Errorf("live_patches[%d].name: missing required field", i)
		}
		// A patch's CVEs come from its manifest: without one, or built
		// for another kernel, they would mark CVEs fixed on no evidence.
		if !lp.Manifest && len(lp.CVEs) > 0 {
			return fmt.Errorf("live_patches[%d] (%s): cves without a manifest (\"manifest\": false): Stent cannot vouch for them; collect the inventory again with stent inventory", i, lp.Name)
		}
		if lp.KernelRelease != "" && lp.KernelRelease != inv.Kernel.Release {
			return fmt.Errorf("live_patches[%d] (%s): kernel_release %s, but the running kernel is %s: its CVEs say nothing about this kernel; collect the inventory again with stent inventory", i, lp.Name, lp.KernelRelease, inv.Kernel.Release)
		}
	}
	return nil
}

// NewestPackage returns the installed kernel package whose release is
// NewestKernel, or nil.
func (inv *Inventory) NewestPackage() *Package {
	for i := range inv.KernelPackages {
		if inv.KernelPackages[i].Release == inv.NewestKernel {
			return &inv.KernelPackages[i]
		}
	}
	return nil
}
