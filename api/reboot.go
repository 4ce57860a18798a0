package api

import "time"

// Kernel updates and reboots: the wire contract between stent-server's
// reboot scheduler, the agent and the admin command line.
//
// An operator (or a saved plan) starts a kernel rollout: "install the
// kernel package version V on these hosts and reboot them into it". The
// server puts a DesiredKernel into each target host's desired state. The
// agent installs the packages through the host's package manager and
// reports ActionKernelInstall; when the new kernel is installed and the
// host has a reason to reboot, it asks for a lease (PathRebootLease). The
// server grants one only inside the host's maintenance window (or for an
// emergency rollout whose deadline comes before the window) and only while
// fewer than the window's MaxUnavailable hosts of its group hold one. The
// agent runs its pre-reboot hooks, boots the new kernel once (GRUB's
// one-shot entry), and after the boot reports ActionKernelBoot: "ok" when
// the new kernel came up healthy (only then is it made the default),
// ResultFellBack when the host came back on the previous kernel. A
// fallback halts the kernel rollout. A healthy boot releases the lease;
// a lease whose host never returns expires after its TTL.
const (
	PathKernelRollouts = "/v1/admin/kernel-rollouts" // POST KernelRolloutRequest -> KernelRollout; GET []KernelRollout; GET /<id>; POST /<id>/{pause,resume,cancel} RolloutActionRequest
	PathWindows        = "/v1/admin/windows"         // GET []MaintenanceWindow; PUT /<name> MaintenanceWindow; DELETE /<name>
	PathReboots        = "/v1/admin/reboots"         // GET RebootStatus (?host=ID or name, ?busy=1); POST /<host-id>/approve RebootApproval
	PathRebootLease    = "/v1/agent/reboot-lease"    // POST LeaseRequest -> LeaseResponse (agent credential)
)

// Report actions and results of kernel updates (api.Report.Action and
// .Result). Report.Rollout names the kernel rollout, Report.Name the
// kernel release ("6.1.0-57-amd64").
const (
	ActionKernelInstall = "kernel-install" // Result ok or failed (Error: the package manager's message)
	ActionKernelBoot    = "kernel-boot"    // Result ok, failed (came up unhealthy) or ResultFellBack
	ResultFellBack      = "fell-back"      // the host came back on its previous kernel
)

// Reasons a host has to reboot (KernelCheckin.RebootReasons), as the
// host inventory names them (inventory.Reason*).
const (
	RebootNewerKernel    = "newer-kernel-installed"
	RebootRequiredFile   = "reboot-required-file"
	RebootRunningRemoved = "running-kernel-removed"
)

// LabelNoReboot on a host blocks every reboot the server would grant it.
const LabelNoReboot = "stent.io/no-reboot"

// DesiredKernel is the kernel the server wants a host to run, part of its
// DesiredState.
type DesiredKernel struct {
	Rollout string `json:"rollout"`
	// Release is the kernel release the packages install ("6.1.0-57-amd64").
	Release string `json:"release"`
	// Version is the package version to install ("6.1.192-3"); empty when
	// the kernel is installed already (a plan's reboot into a newer
	// installed kernel): install Packages as the repository has them, a
	// no-op where they are installed.
	Version string `json:"version"`
	// Packages are the package names to install at Version (the versioned
	// image package and, where the host uses it, the metapackage).
	Packages []string `json:"packages"`
	// Emergency allows the reboot outside the host's window (still within
	// the fleet's reboot budget) when Deadline comes before the window.
	Emergency bool       `json:"emergency,omitempty"`
	Deadline  *time.Time `json:"deadline,omitempty"`
	Reason    string     `json:"reason,omitempty"` // why: CVEs, the plan's rule
}

// KernelCheckin is the host's kernel situation, sent with every check-in
// by agents that manage kernels.
type KernelCheckin struct {
	Running        string            `json:"running"`                   // release
	RunningVersion string            `json:"running_version,omitempty"` // package version
	Installed      []InstalledKernel `json:"installed,omitempty"`
	Default        string            `json:"default,omitempty"`    // release the boot loader boots by default
	KnownGood      string            `json:"known_good,omitempty"` // the last release that booted healthy
	RebootReasons  []string          `json:"reboot_reasons,omitempty"`
	// Blockers are what stops this host from rebooting now on its own side:
	// "file /etc/stent/no-reboot", "prometheus: 2 alerts firing", "pre-reboot
	// hook drain exited 1: ...".
	Blockers []string `json:"blockers,omitempty"`
	// Lease is the reboot lease the host holds, if any.
	Lease string `json:"lease,omitempty"`
	// LastBoot is the outcome of the last boot into a new kernel.
	LastBoot *BootOutcome `json:"last_boot,omitempty"`
}

// InstalledKernel is one installed kernel package.
type InstalledKernel struct {
	Release string `json:"release"`
	Package string `json:"package"`
	Version string `json:"version"`
	Pinned  bool   `json:"pinned,omitempty"`
}

// BootOutcome is what came of booting a new kernel.
type BootOutcome struct {
	Rollout string    `json:"rollout,omitempty"`
	From    string    `json:"from"`   // release before the reboot
	To      string    `json:"to"`     // release the reboot tried
	Booted  string    `json:"booted"` // release that came up
	Result  string    `json:"result"` // ResultOK, ResultFailed, ResultFellBack
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
	// Duration is from the reboot's start to the healthy agent.
	Duration Duration `json:"duration,omitempty"`
}

// LeaseRequest asks for (Release false) or gives back (Release true) a
// reboot lease.
type LeaseRequest struct {
	Rollout string   `json:"rollout,omitempty"`
	Kernel  string   `json:"kernel,omitempty"`  // release the reboot is for
	Reasons []string `json:"reasons,omitempty"` // KernelCheckin.RebootReasons
	Release bool     `json:"release,omitempty"`
	Lease   string   `json:"lease,omitempty"` // on release
}

// LeaseResponse grants a lease or says why not and when to ask again.
type LeaseResponse struct {
	Granted   bool      `json:"granted"`
	Lease     string    `json:"lease,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Wait says why the host may not reboot now: "outside window tue-night
	// (opens 2026-12-08T03:00:00+01:00)", "2 of 2 hosts of group web
	// rebooting", "host label stent.io/no-reboot", "awaiting approval".
	Wait     string    `json:"wait,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
	Window   string    `json:"window,omitempty"`
	Approval bool      `json:"approval,omitempty"` // an operator's approval is needed
}

// MaintenanceWindow is a group's reboot window and budget. A host belongs
// to the first window (by name) whose selector its labels match.
type MaintenanceWindow struct {
	Name string `json:"name"`
	// When is a window in stent plan's grammar: "Tue 03:00-05:00
	// Europe/Berlin", "second Sunday of the month 02:00-06:00 UTC".
	When     string            `json:"when"`
	Selector map[string]string `json:"selector,omitempty"`
	// MaxUnavailable is a count ("1") or a percentage of the group ("20%").
	MaxUnavailable string `json:"max_unavailable"`
	// LeaseTTL bounds how long a host may stay away; default 30m.
	LeaseTTL Duration `json:"lease_ttl,omitempty"`
	// RequireApproval makes emergency reboots of this group wait for an
	// operator's `stent fleet reboots approve`.
	RequireApproval bool      `json:"require_approval,omitempty"`
	UpdatedAt       time.Time `json:"updated_at,omitzero"`
	UpdatedBy       string    `json:"updated_by,omitempty"`
}

// KernelRolloutRequest starts a kernel rollout.
type KernelRolloutRequest struct {
	Release   string            `json:"release"`
	Version   string            `json:"version"`
	Packages  []string          `json:"packages,omitempty"` // default linux-image-<release>
	Selector  map[string]string `json:"selector,omitempty"`
	Hosts     []string          `json:"hosts,omitempty"` // host ids or names; with Selector, both must match
	Emergency bool              `json:"emergency,omitempty"`
	Deadline  *time.Time        `json:"deadline,omitempty"`
	Reason    string            `json:"reason,omitempty"`
}

// Per-host states of a kernel rollout.
const (
	KernelPending    = "pending"    // not yet told
	KernelInstalling = "installing" // told to install
	KernelInstalled  = "installed"  // installed, waiting for its window or lease
	KernelRebooting  = "rebooting"  // holds a lease
	KernelHealthy    = "healthy"    // runs the new kernel, healthy
	KernelFellBack   = "fell-back"  // came back on the previous kernel
	KernelFailed     = "failed"     // install failed
)

// KernelRollout is the admin view of a kernel rollout.
type KernelRollout struct {
	ID        string            `json:"id"`
	Release   string            `json:"release"`
	Version   string            `json:"version"`
	Packages  []string          `json:"packages"`
	Selector  map[string]string `json:"selector,omitempty"`
	Hosts     []string          `json:"hosts,omitempty"`
	Emergency bool              `json:"emergency,omitempty"`
	Deadline  *time.Time        `json:"deadline,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	State     string            `json:"state"` // RolloutRunning, RolloutPaused, RolloutHalted, RolloutCompleted, "cancelled"
	Halt      string            `json:"halt,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
	Counts    map[string]int    `json:"counts"` // by Kernel* host state
	Targets   []KernelHost      `json:"targets,omitempty"`
}

// KernelHost is one host's progress in a kernel rollout.
type KernelHost struct {
	HostID    string    `json:"host_id"`
	Hostname  string    `json:"hostname,omitempty"`
	State     string    `json:"state"`
	Detail    string    `json:"detail,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// RebootStatus is the operator's view of reboots: who waits for which
// window and why, who holds a lease, who is blocked, who fell back.
type RebootStatus struct {
	Windows []MaintenanceWindow `json:"windows"`
	Hosts   []HostReboot        `json:"hosts"`
	At      time.Time           `json:"at"`
}

// HostReboot is one host in RebootStatus.
type HostReboot struct {
	HostID    string       `json:"host_id"`
	Hostname  string       `json:"hostname"`
	Window    string       `json:"window,omitempty"`
	Rollout   string       `json:"rollout,omitempty"`
	State     string       `json:"state"` // a Kernel* state, or "idle"
	Kernel    string       `json:"kernel,omitempty"`
	Target    string       `json:"target,omitempty"`
	Wait      string       `json:"wait,omitempty"`
	Blockers  []string     `json:"blockers,omitempty"`
	Lease     string       `json:"lease,omitempty"`
	LeaseEnds time.Time    `json:"lease_ends,omitzero"`
	Approval  bool         `json:"approval,omitempty"` // waiting for an approval
	LastBoot  *BootOutcome `json:"last_boot,omitempty"`
}

// RebootApproval approves one host's emergency reboot.
type RebootApproval struct {
	Reason string `json:"reason,omitempty"`
}

// RebootQuery narrows a RebootStatus; zero fields select every host.
type RebootQuery struct {
	Host string // only this host, by id or hostname
	Busy bool   // only hosts for which HostReboot.Busy
}

// Busy reports whether the scheduler has anything to say about h: it is
// not idle, holds a lease, waits, is blocked or awaits an approval, or its
// last kernel boot did not go well.
func (h HostReboot) Busy() bool {
	return h.State != "idle" || h.Lease != "" || h.Wait != "" || len(h.Blockers) > 0 || h.Approval ||
		(h.LastBoot != nil && h.LastBoot.Result != ResultOK)
}
