// Package testenv says what a test needs from the machine it runs on:
// tools on PATH, root, a database. When something is missing the test is
// skipped with the reason, so that a laptop without QEMU still runs the
// rest; under CI=true it fails with the same reason instead, because CI
// machines are set up to run everything (make deps, scripts/setup-deps.sh)
// and a test that silently skips there tests nothing.
//
// Skipping for -short or for an opt-in variable (STENT_FLEETVM=1) is a
// choice, not a lack: tests do that themselves.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run under CI (CI=true), where nothing may
// be skipped for want of a tool or of root.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops tb because this machine lacks what it needs, saying
// what: it skips it, or fails it under CI=true.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		tb.Fatal(msg + " (CI=true: it must run here)")
	}
	tb.Skip(msg)
}

// MissingTools returns the tools that are not on PATH, in order.
func MissingTools(tools ...string) []string {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	return missing
}

// NeedTools stops tb (see Unavailable) unless every tool is on PATH,
// naming the missing ones.
func NeedTools(tb testing.TB, tools ...string) {
	tb.Helper()
	if missing := MissingTools(tools...); len(missing) > 0 {
		Unavailable(tb, "needs %s on PATH (make deps installs it)", strings.Join(missing, ", "))
	}
}

// HaveTools reports whether every tool is on PATH, for a test that runs a
// part (a cross-check with readelf, say) only where they are. Under
// CI=true a missing tool fails the test instead.
func HaveTools(tb testing.TB, tools ...string) bool {
	tb.Helper()
	missing := MissingTools(tools...)
	if len(missing) > 0 && CI() {
		tb.Fatalf("needs %s on PATH (make deps installs it; CI=true: it must run here)", strings.Join(missing, ", "))
	}
	return len(missing) == 0
}

// NeedRoot stops tb (see Unavailable) unless it runs as root; why says
// what needs it ("mounting a read-only tmpfs").
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "%s needs root", why)
	}
}
