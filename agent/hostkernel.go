package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bootldr"
	"github.com/stent-dev/stent/pkgmgr"
	"github.com/stent-dev/stent/watchdog"
)

// HostKernels is the KernelManager of a real host: its package manager
// (apt or dnf through pkgmgr) and its boot loader (bootldr).
type HostKernels struct {
	Pkg  *pkgmgr.Manager
	Boot *bootldr.Loader
	// Root is the filesystem root ("/").
	Root string
	// StateFile and PinsFile default to pkgmgr.StateFile and
	// pkgmgr.PinsFile under Root (stent agent sets StateFile to the one in
	// --state-dir, as stent kernel uses).
	StateFile, PinsFile string
	// Keep is how many kernels cleanup keeps (pkgmgr.DefaultKeep when 0).
	Keep int
	// PanicSeconds is the panic= timeout the boot loader is given, so a
	// kernel that panics reboots into the default; 0: bootldr's default.
	PanicSeconds int
	// BootWatchdog is how long the first boot of a new kernel has until
	// the agent judges it before the watchdog resets the machine (package
	// watchdog; stent-boot-watchdog.service arms it); 0: no watchdog.
	BootWatchdog time.Duration
	// Watchdog are the trial boot records and the watchdog device
	// (watchdog.HostFiles under Root when zero; stent agent sets them to
	// its --state-dir and --run-dir, as stent watchdog uses).
	Watchdog watchdog.Files
	// Reboot runs the reboot; default "systemctl reboot".
	RebootCommand []string
	// Progress receives the package manager's progress lines.
	Progress io.Writer
}

// NewHostKernels returns the KernelManager of the host under root.
func NewHostKernels(root string) (*HostKernels, error) {
	pm, err := pkgmgr.New(root)
	if err != nil {
		return nil, err
	}
	bl, err := bootldr.New(root)
	if err != nil {
		return nil, err
	}
	return &HostKernels{Pkg: pm, Boot: bl, Root: root}, nil
}

func (h *HostKernels) under(p, def string) string {
	if p != "" {
		return p
	}
	return filepath.Join(h.Root, def)
}

func (h *HostKernels) running() (string, error) {
	if h.Pkg.Running != "" {
		return h.Pkg.Running, nil
	}
	b, err := os.ReadFile(filepath.Join(h.Root, "proc/sys/kernel/osrelease"))
	if err != nil {
		return "", fmt.Errorf("running kernel: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Status implements KernelManager.
func (h *HostKernels) Status(ctx context.Context) (*api.KernelCheckin, error) {
	run, err := h.running()
	if err != nil {
		return nil, err
	}
	ks, err := h.Pkg.Kernels(ctx)
	if err != nil {
		return nil, err
	}
	st, err := pkgmgr.LoadState(h.under(h.StateFile, pkgmgr.StateFile))
	if err != nil {
		return nil, err
	}
	pins, err := pkgmgr.LoadPins(h.under(h.PinsFile, pkgmgr.PinsFile))
	if err != nil {
		return nil, err
	}
	kc := &api.KernelCheckin{Running: run, KnownGood: st.KnownGood}
	runningInstalled := false
	for _, k := range ks {
		if !k.Installed() {
			continue
		}
		kc.Installed = append(kc.Installed, api.InstalledKernel{Release: k.Release, Package: k.Package, Version: k.Version,
			Pinned: k.Held || slices.Contains(pins, k.Release)})
		if k.Release == run {
			runningInstalled = true
			kc.RunningVersion = k.Version
		}
	}
	// Kernels lists the newest first.
	if len(kc.Installed) > 0 && kc.Installed[0].Release != run {
		kc.RebootReasons = append(kc.RebootReasons, api.RebootNewerKernel)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "run/reboot-required")); err == nil {
		kc.RebootReasons = append(kc.RebootReasons, api.RebootRequiredFile)
	}
	if !runningInstalled && len(kc.Installed) > 0 {
		kc.RebootReasons = append(kc.RebootReasons, api.RebootRunningRemoved)
	}
	if bs, err := h.Boot.Status(ctx); err == nil {
		kc.Default = bs.DefaultRelease
	}
	return kc, nil
}

// Install implements KernelManager. It first makes the boot loader fit
// for a one-shot boot with fallback (pinning the running kernel as the
// default when none is pinned), so that the new kernel's own boot-loader
// update cannot make it the default.
func (h *HostKernels) Install(ctx context.Context, k api.DesiredKernel) (string, error) {
	run, err := h.running()
	if err != nil {
		return "", err
	}
	if _, err := h.Boot.EnsureConfig(ctx, h.PanicSeconds, run); err != nil {
		return "", err
	}
	t := pkgmgr.Target{Release: k.Release, Version: k.Version}
	for _, p := range k.Packages {
		if p != "" && !strings.HasSuffix(p, k.Release) {
			t.Meta = true // the metapackage, linux-image-amd64
		}
	}
	h.Pkg.Progress = h.Progress
	res, err := h.Pkg.Upgrade(ctx, t)
	if err != nil {
		return "", err
	}
	var what []string
	for _, c := range res.Changes {
		what = append(what, c.String())
	}
	if res.Already {
		return "already installed: " + strings.Join(what, ", "), nil
	}
	return strings.Join(what, ", "), nil
}

// BootOnce implements KernelManager.
func (h *HostKernels) BootOnce(ctx context.Context, release string) error {
	err := h.Boot.BootOnce(ctx, release)
	if errors.Is(err, bootldr.ErrNotSaved) {
		run, rerr := h.running()
		if rerr != nil {
			return err
		}
		if _, cerr := h.Boot.EnsureConfig(ctx, h.PanicSeconds, run); cerr != nil {
			return fmt.Errorf("%w; making the boot loader boot a pinned default: %v", err, cerr)
		}
		err = h.Boot.BootOnce(ctx, release)
	}
	if err != nil || h.BootWatchdog == 0 {
		return err
	}
	// A kernel that hangs instead of panicking, or never starts the
	// agent, is reset by the watchdog armed early in its boot.
	if err := h.watchdogFiles().Plan(release, h.BootWatchdog); err != nil {
		return fmt.Errorf("%w (the one-shot boot of %s is set; without the watchdog a hang would need a person)", err, release)
	}
	return nil
}

// CancelBootOnce drops the watchdog's trial plan when the reboot did not
// happen (the boot loader's one-shot entry stays; the next reboot, whoever
// asks for it, tries the new kernel once, unguarded by the agent).
func (h *HostKernels) CancelBootOnce() error { return h.watchdogFiles().Cancel() }

func (h *HostKernels) watchdogFiles() watchdog.Files {
	if h.Watchdog != (watchdog.Files{}) {
		return h.Watchdog
	}
	f := watchdog.HostFiles
	return watchdog.Files{StateDir: h.under("", f.StateDir), RunDir: h.under("", f.RunDir), Device: h.under("", f.Device)}
}

// Confirm implements KernelManager. It first stops the watchdog that
// guards a trial boot: a failure to stop it is a failure to confirm, as the
// watchdog would reset the machine anyway.
func (h *HostKernels) Confirm(ctx context.Context, release string) error {
	if _, err := h.watchdogFiles().Disarm(); err != nil {
		return err
	}
	if err := h.Boot.SetDefault(ctx, release); err != nil {
		return err
	}
	path := h.under(h.StateFile, pkgmgr.StateFile)
	st, err := pkgmgr.LoadState(path)
	if err != nil {
		st = pkgmgr.State{}
	}
	st.KnownGood = release
	st.KnownGoodAt = time.Now().UTC()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return pkgmgr.SaveState(path, st)
}

// Cleanup implements KernelManager.
func (h *HostKernels) Cleanup(ctx context.Context) error {
	st, err := pkgmgr.LoadState(h.under(h.StateFile, pkgmgr.StateFile))
	if err != nil {
		return err
	}
	pins, err := pkgmgr.LoadPins(h.under(h.PinsFile, pkgmgr.PinsFile))
	if err != nil {
		return err
	}
	_, err = h.Pkg.Cleanup(ctx, pkgmgr.Policy{Keep: h.Keep, KnownGood: st.KnownGood, Pinned: pins})
	return err
}

// Reboot implements KernelManager.
func (h *HostKernels) Reboot(ctx context.Context) error {
	cmd := h.RebootCommand
	if len(cmd) == 0 {
		cmd = []string{"systemctl", "reboot"}
	}
	_, _, err := h.Pkg.Runner.Run(ctx, cmd[0], cmd[1:], nil)
	return err
}

// SystemdRunner runs each command in a transient systemd service
// (systemd-run --wait --pipe) instead of as the agent's child. The agent's
// unit is sandboxed (ProtectSystem=strict: /usr, /boot and /etc read-only),
// which is right for live patching but not for a package manager that
// installs a kernel and updates the boot loader: through systemd-run those
// commands run outside the sandbox, with their output and exit status
// passed back as if run directly.
type SystemdRunner struct {
	Inner pkgmgr.Runner // runs systemd-run itself; default pkgmgr.ExecRunner
}

// readOnly reports whether a command only reads, so that it can run in
// the agent's sandbox without a transient unit.
func readOnly(name string, args []string) bool {
	switch name {
	case "dpkg-query", "apt-cache":
		return true
	case "rpm":
		return len(args) > 0 && strings.HasPrefix(args[0], "-q")
	case "apt-mark":
		return len(args) > 0 && args[0] == "showhold"
	case "grub-editenv":
		return len(args) > 0 && args[len(args)-1] == "list"
	}
	return false
}

// Run implements pkgmgr.Runner.
func (s SystemdRunner) Run(ctx context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	inner := s.Inner
	if inner == nil {
		inner = pkgmgr.ExecRunner{}
	}
	if readOnly(name, args) {
		return inner.Run(ctx, name, args, env)
	}
	sargs := []string{"--wait", "--pipe", "--quiet", "--collect", "--service-type=exec", "--property=KillMode=control-group"}
	for _, e := range env {
		sargs = append(sargs, "--setenv="+e)
	}
	sargs = append(sargs, "--", name)
	return inner.Run(ctx, "systemd-run", append(sargs, args...), nil)
}

// UnderSystemd reports whether this process runs as a systemd service.
func UnderSystemd() bool { return os.Getenv("INVOCATION_ID") != "" }
