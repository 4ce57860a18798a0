// Package watchdog guards the first boot of a new kernel with the kernel's
// watchdog, as systemd's boot assessment does for boot entries: a kernel
// that panics reboots by itself (panic=), but one that hangs, or comes up
// without ever starting Stent's agent, would stay hung. Before the agent
// reboots into a new kernel it plans a trial (Plan); early in that boot
// stent-boot-watchdog.service arms the watchdog (Arm), once, and only when
// the running kernel is the one on trial; the agent disarms it (Disarm)
// when it has judged the boot. A boot that never gets that far is reset by
// the watchdog, and the boot loader, its one-shot entry spent, boots the
// previous default kernel.
//
// The watchdog is /dev/watchdog: the machine's hardware watchdog when a
// driver for one is loaded, otherwise the kernel's softdog module (a timer
// in the kernel: it resets a machine whose user space hangs, not one whose
// kernel is wedged with interrupts off; panic= and the hardware watchdog
// cover those).
package watchdog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stent-dev/stent/internal/atomicfile"
)

// Files are where a host keeps its trial boot records, and its watchdog.
type Files struct {
	// StateDir holds the trial the agent plans before the reboot
	// (TrialName): it must survive the reboot (stent's --state-dir).
	StateDir string
	// RunDir records, for this boot only, that Arm armed the watchdog
	// (ArmedName; stent's --run-dir).
	RunDir string
	// Device is the watchdog device.
	Device string
}

// File names under Files' folders.
const (
	TrialName = "trial-boot"
	ArmedName = "watchdog-armed"
)

// HostFiles are a host's: stent's default --state-dir and --run-dir, and
// /dev/watchdog.
var HostFiles = Files{StateDir: "/var/lib/stent", RunDir: "/run/stent", Device: "/dev/watchdog"}

// TrialPath is the planned trial's file.
func (f Files) TrialPath() string { return filepath.Join(f.StateDir, TrialName) }

// ArmedPath is this boot's armed trial's file.
func (f Files) ArmedPath() string { return filepath.Join(f.RunDir, ArmedName) }

// DefaultTimeout is how long a trial boot has, from the moment the
// watchdog is armed early in the boot, until the agent has judged it.
const DefaultTimeout = 10 * time.Minute

// Trial is a planned trial boot.
type Trial struct {
	Release string    `json:"release"` // the kernel on trial (uname -r)
	Timeout Seconds   `json:"timeout_seconds"`
	Planned time.Time `json:"planned"`
	// Armed and Device are set in ArmedFile.
	Armed  time.Time `json:"armed,omitzero"`
	Device string    `json:"device,omitempty"`
}

// Seconds is a duration written as whole seconds.
type Seconds int

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// Plan records that the next boot of release is a trial the watchdog
// guards for timeout (DefaultTimeout when 0).
func (f Files) Plan(release string, timeout time.Duration) error {
	if release == "" {
		return errors.New("watchdog: plan a trial boot: no kernel release")
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 10*time.Second || timeout > 18*time.Hour {
		return fmt.Errorf("watchdog: trial boot timeout %v: want between 10s and 18h (the watchdog's range)", timeout)
	}
	t := Trial{Release: release, Timeout: Seconds(timeout / time.Second), Planned: time.Now().UTC()}
	b, _ := json.MarshalIndent(t, "", "  ")
	path := f.TrialPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}

// Cancel removes a planned trial (the reboot was called off).
func (f Files) Cancel() error {
	err := os.Remove(f.TrialPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}

func readTrial(path string) (*Trial, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	var t Trial
	if err := json.Unmarshal(b, &t); err != nil || t.Release == "" || t.Timeout <= 0 {
		return nil, fmt.Errorf("watchdog: %s is not a trial boot record (%v): remove it", path, err)
	}
	return &t, nil
}

// Planned returns the planned trial boot, nil if none.
func (f Files) Planned() (*Trial, error) { return readTrial(f.TrialPath()) }

// Armed returns the trial this boot's watchdog guards, nil if none.
func (f Files) Armed() (*Trial, error) { return readTrial(f.ArmedPath()) }

// Arm runs early in every boot. When a trial is planned for the running
// kernel it arms the watchdog for the trial's timeout and returns the
// trial; otherwise (no trial, or this boot runs another kernel: the trial
// kernel did not come up and this is the fallback) it returns nil. The
// plan is used up either way: a trial is armed at most once.
//
// Loading softdog is left to the caller's modprobe when no device exists
// when f.Device does not exist (ensureDevice).
func (f Files) Arm(running string) (*Trial, error) {
	path := f.TrialPath()
	t, err := readTrial(path)
	if t == nil || err != nil {
		if err != nil {
			os.Remove(path) // a broken record must not be read at every boot
		}
		return nil, err
	}
	if err := os.Remove(path); err != nil {
		// Arming a trial that cannot be used up would arm it at every
		// boot of that kernel.
		return nil, fmt.Errorf("watchdog: use up %s: %w; not arming", path, err)
	}
	if t.Release != running {
		return nil, nil
	}
	dev := f.Device
	if err := ensureDevice(dev); err != nil {
		return nil, err
	}
	w, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("watchdog: %s is held by another program (systemd's RuntimeWatchdogSec=, a watchdog daemon): it guards the boot already, Stent does not arm it", dev)
	}
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	// Opening started it. A watchdog without the magic close stops when
	// closed, so it cannot guard a boot from a oneshot: stop it with 'V'
	// (ignored, as it closes) and say so.
	info, err := unix.IoctlGetWatchdogInfo(int(w.Fd()))
	if err != nil || info.Options&unix.WDIOF_MAGICCLOSE == 0 || info.Options&unix.WDIOF_SETTIMEOUT == 0 {
		w.Write([]byte("V"))
		w.Close()
		ident := "?"
		if info != nil {
			ident = strings.TrimRight(string(info.Identity[:]), "\x00")
		}
		return nil, fmt.Errorf("watchdog: %s (%s) does not keep running when closed or cannot set a timeout (options %#x, %v): not arming", dev, ident, infoOptions(info), err)
	}
	// On any failure from here on, stop it again (the magic close): a
	// watchdog left running with no record would reset a healthy boot.
	stop := func() { w.Write([]byte("V")); w.Close() }
	// Set the trial's timeout, ping once, record the trial, and close
	// without the magic 'V': the watchdog keeps running and resets the
	// machine unless Disarm stops it in time.
	if err := unix.IoctlSetPointerInt(int(w.Fd()), unix.WDIOC_SETTIMEOUT, int(t.Timeout)); err != nil {
		stop()
		return nil, fmt.Errorf("watchdog: set %s's timeout to %ds: %w; not arming", dev, t.Timeout, err)
	}
	if _, err := w.Write([]byte{0}); err != nil {
		stop()
		return nil, fmt.Errorf("watchdog: ping %s: %w; not arming", dev, err)
	}
	t.Armed, t.Device = time.Now().UTC(), dev
	b, _ := json.MarshalIndent(t, "", "  ")
	armed := f.ArmedPath()
	if err := os.MkdirAll(filepath.Dir(armed), 0o755); err != nil {
		stop()
		return nil, fmt.Errorf("watchdog: record the trial: %w; not arming", err)
	}
	if err := atomicfile.Write(armed, append(b, '\n'), 0o644); err != nil {
		stop()
		return nil, fmt.Errorf("watchdog: record the trial: %w; not arming", err)
	}
	w.Close()
	return t, nil
}

func infoOptions(i *unix.WatchdogInfo) uint32 {
	if i == nil {
		return 0
	}
	return i.Options
}

// ensureDevice loads softdog when no watchdog device exists.
func ensureDevice(dev string) error {
	if _, err := os.Stat(dev); err == nil {
		return nil
	}
	out, err := exec.Command("modprobe", "softdog").CombinedOutput()
	if err != nil {
		return fmt.Errorf("watchdog: no %s and modprobe softdog failed: %v: %s", dev, err, strings.TrimSpace(string(out)))
	}
	for range 50 {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("watchdog: softdog loaded but %s did not appear", dev)
}

// Disarm stops the watchdog Arm armed in this boot (a no-op when it armed
// none) and returns the trial it guarded.
func (f Files) Disarm() (*Trial, error) {
	armed := f.ArmedPath()
	t, err := readTrial(armed)
	if t == nil || err != nil {
		return nil, err
	}
	dev := t.Device
	if dev == "" {
		dev = f.Device
	}
	w, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return t, fmt.Errorf("watchdog: disarm %s: %w (it resets the machine at %s unless stopped)", dev, err,
			t.Armed.Add(t.Timeout.Duration()).Format(time.RFC3339))
	}
	// The magic close: 'V' then close stops a watchdog that allows it.
	_, werr := w.Write([]byte("V"))
	cerr := w.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return t, fmt.Errorf("watchdog: disarm %s: %w", dev, err)
	}
	if err := os.Remove(armed); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return t, fmt.Errorf("watchdog: disarmed, but: %w", err)
	}
	return t, nil
}
