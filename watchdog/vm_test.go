package watchdog_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/internal/vmtest"
)

// TestWatchdogOnRealKernel runs stent watchdog on Debian's kernel under
// QEMU, with softdog as the only watchdog (as on a VM without one): a trial
// boot planned for another kernel arms nothing; one planned for the running
// kernel loads softdog and arms it; disarmed, the guest lives past the
// timeout; armed and left alone, softdog resets the guest (QEMU runs with
// -no-reboot here, so the reset ends it), as it would a hung first boot.
func TestWatchdogOnRealKernel(t *testing.T) {
	k := vmtest.Kernel(t, vmtest.DefaultABI)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vm := vmtest.Boot(ctx, t, vmtest.Options{Kernel: k, Modules: []string{"softdog"}})
	sh := func(script string) string {
		t.Helper()
		res, err := vm.Sh(ctx, script)
		if err != nil || res.Exit != 0 {
			t.Fatalf("%s: %v, exit %d\n%s%s", script, err, res.Exit, res.Stdout, res.Stderr)
		}
		return res.Stdout
	}
	const timeout = 15 * time.Second
	if out := sh("stent watchdog plan --release 9.9.9-other --timeout 15s && stent watchdog arm"); !strings.Contains(out, "not armed") {
		t.Fatalf("arm for another kernel: %q, want nothing armed", out)
	}
	if out := sh("lsmod | grep -c '^softdog' || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("softdog loaded for a trial of another kernel")
	}
	out := sh("stent watchdog plan --release $(uname -r) --timeout 15s && stent watchdog arm && stent watchdog status")
	if !strings.Contains(out, "armed, resets the machine at") || !strings.Contains(out, "armed: trial boot of "+k.Release) || !strings.Contains(out, "planned: no") {
		t.Fatalf("arm for the running kernel: %q", out)
	}
	if got := sh("cat /sys/class/watchdog/watchdog0/identity /sys/class/watchdog/watchdog0/state /sys/class/watchdog/watchdog0/timeout"); got != "Software Watchdog\nactive\n15\n" {
		t.Errorf("watchdog0 identity, state, timeout = %q, want softdog active with 15 s", got)
	}
	if out := sh("stent watchdog disarm"); !strings.Contains(out, "stopped") {
		t.Fatalf("disarm: %q", out)
	}
	if got := sh("cat /sys/class/watchdog/watchdog0/state"); got != "inactive\n" {
		t.Errorf("state after disarm = %q, want inactive", got)
	}
	time.Sleep(timeout + 5*time.Second)
	if out := sh("echo alive"); out != "alive\n" {
		t.Fatalf("guest after a disarmed timeout: %q", out)
	}

	// Armed and never disarmed: a boot that hangs before the agent judges
	// it. softdog resets the machine at the timeout.
	sh("stent watchdog plan --release $(uname -r) --timeout 15s && stent watchdog arm")
	armedAt := time.Now()
	deadline := armedAt.Add(timeout + 45*time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Second)
		if _, err := vm.Sh(ctx, "true"); errors.Is(err, vmtest.ErrDown) {
			after := time.Since(armedAt).Round(time.Second)
			if after < timeout-time.Second {
				t.Errorf("guest down %v after arming, before the %v timeout", after, timeout)
			}
			if c := vm.Console(); !strings.Contains(c, "softdog") {
				t.Errorf("guest went down %v after arming but its console does not show softdog:\n%s", after, vm.ConsoleTail(15))
			}
			t.Logf("softdog reset the guest %v after arming", after)
			return
		}
	}
	t.Fatalf("guest still up %v after the watchdog was armed for %v; console:\n%s", time.Since(armedAt).Round(time.Second), timeout, vm.ConsoleTail(15))
}
