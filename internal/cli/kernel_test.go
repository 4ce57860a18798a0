package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/pkgmgr"
)

func TestParseTo(t *testing.T) {
	for _, tt := range []struct {
		in      string
		release string
		version string
		ok      bool
	}{
		{"", "", "", true},
		{"6.1.0-57-amd64", "6.1.0-57-amd64", "", true},
		{"6.1.0-57-cloud-amd64", "6.1.0-57-cloud-amd64", "", true},
		{"6.1.192-3", "", "6.1.192-3", true},
		{"6.1.0-57-amd64=6.1.192-3", "6.1.0-57-amd64", "6.1.192-3", true},
		{"5.14.0-362.8.1.el9_3.x86_64", "5.14.0-362.8.1.el9_3.x86_64", "", true},
		{"5.14.0-362.8.1.el9_3", "", "5.14.0-362.8.1.el9_3", true},
		{"=6.1.192-3", "", "", false},
		{"6.1 .0", "", "", false},
	} {
		got, err := parseTo(tt.in)
		if (err == nil) != tt.ok || got.Release != tt.release || got.Version != tt.version {
			t.Errorf("parseTo(%q) = %+v, %v, want release %q version %q", tt.in, got, err, tt.release, tt.version)
		}
	}
}

func TestKernelUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"kernel", "cleanup", "--keep", "0"},
		{"kernel", "upgrade", "--to", "=x"},
	} {
		_, errs, code := runCLI(t, root, args...)
		if code != 2 {
			t.Errorf("stent %v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	// A distribution without apt or dnf: a clear error, exit 1.
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=arch\n"), 0o644))
	_, errs, code := runCLI(t, root, "kernel", "list")
	if code != 1 || !strings.Contains(errs, "package manager not supported") {
		t.Errorf("stent kernel list on Arch: exit %d, %s", code, errs)
	}
}

// TestKernelListThisHost runs stent kernel list --json against this
// machine's real dpkg database and apt-mark.
func TestKernelListThisHost(t *testing.T) {
	if fam, err := pkgmgr.Detect("/"); err != nil || fam != pkgmgr.Apt {
		testenv.Unavailable(t, "this machine is not apt-based (%v); CI runs Debian", err)
	}
	state := t.TempDir()
	must(t, pkgmgr.SaveState(filepath.Join(state, "kernel.json"), pkgmgr.State{KnownGood: "6.1.0-56-amd64"}))
	code, out, errs := execStent(t, "--root", "/", "--state-dir", state, "kernel", "list", "--json")
	if code != 0 {
		t.Fatalf("stent kernel list --json: exit %d\n%s", code, errs)
	}
	var rep kernelListing
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if rep.Family != pkgmgr.Apt || rep.KnownGood != "6.1.0-56-amd64" || rep.Kernels == nil {
		t.Errorf("stent kernel list --json = %+v", rep)
	}
	t.Logf("kernels on this host: %d, boot loader: %v %s", len(rep.Kernels), rep.BootLoader, rep.BootError)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
