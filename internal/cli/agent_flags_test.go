package cli

import (
	"strings"
	"testing"
)

// TestAgentBootWatchdogFlag: a watchdog too short to judge a boot is
// refused before anything starts, naming what it must cover.
func TestAgentBootWatchdogFlag(t *testing.T) {
	root := t.TempDir()
	_, errs, code := runCLI(t, root, "agent", "--kernel-updates", "--boot-watchdog", "2m", "--health-delay", "10s", "--hook-timeout", "5m")
	if code == 0 || !strings.Contains(errs, "--boot-watchdog 2m0s: too short") || !strings.Contains(errs, "give at least 6m10s") {
		t.Errorf("agent --boot-watchdog 2m: exit %d, stderr %q; want a refusal asking for 6m10s", code, errs)
	}
	// Without kernel updates the watchdog plays no part; 0 turns it off.
	for _, args := range [][]string{
		{"agent", "--boot-watchdog", "2m"},
		{"agent", "--kernel-updates", "--boot-watchdog", "0"},
	} {
		_, errs, _ := runCLI(t, root, args...)
		if strings.Contains(errs, "--boot-watchdog") {
			t.Errorf("%v: stderr %q, want no complaint about --boot-watchdog", args, errs)
		}
	}
}
