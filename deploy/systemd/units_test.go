// Package systemd holds Stent's systemd units; this test checks them with
// systemd's own parser.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
)

// TestUnitsVerify runs systemd-analyze verify on every unit, with the
// stent binaries' paths pointed at a stub so that only the units are
// judged: an unknown directive, a bad value or a missing dependency makes
// it print, and any output fails the test.
func TestUnitsVerify(t *testing.T) {
	testenv.NeedTools(t, "systemd-analyze")
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob("stent-*.*")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units found: %v", err)
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, u := range units {
		if strings.HasSuffix(u, ".go") {
			continue
		}
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("/usr/sbin/stent", stub, "/usr/bin/stent-server", stub).Replace(string(b))
		if s == string(b) && strings.HasSuffix(u, ".service") {
			t.Errorf("%s runs neither /usr/sbin/stent nor /usr/bin/stent-server", u)
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(units, " "), err, out)
	}
	t.Logf("verified %s", strings.Join(units, " "))
}
