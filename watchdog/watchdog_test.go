package watchdog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPlanValidates(t *testing.T) {
	f := testFiles(t)
	for _, tt := range []struct {
		release string
		timeout time.Duration
		want    string
	}{
		{"", time.Minute, "no kernel release"},
		{"6.1.0-57-amd64", time.Second, "want between 10s and 18h"},
		{"6.1.0-57-amd64", 19 * time.Hour, "want between 10s and 18h"},
	} {
		if err := f.Plan(tt.release, tt.timeout); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Plan(%q, %v) = %v, want an error saying %q", tt.release, tt.timeout, err, tt.want)
		}
	}
	if p, err := f.Planned(); p != nil || err != nil {
		t.Errorf("after refused plans: Planned = %+v, %v; want nothing written", p, err)
	}
	if err := f.Plan("6.1.0-57-amd64", 0); err != nil {
		t.Fatal(err)
	}
	p, err := f.Planned()
	if err != nil || p == nil || p.Release != "6.1.0-57-amd64" || p.Timeout.Duration() != DefaultTimeout {
		t.Errorf("Planned = %+v, %v; want 6.1.0-57-amd64 with the default timeout", p, err)
	}
	if err := f.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := f.Cancel(); err != nil {
		t.Errorf("Cancel without a plan = %v, want nil", err)
	}
}

// TestArmOtherKernel: the boot that follows a trial kernel which did not
// come up runs the previous kernel: nothing is armed, and the plan is used
// up so that no later boot of the trial kernel arms it either.
func TestArmOtherKernel(t *testing.T) {
	f := testFiles(t)
	if err := f.Plan("6.1.0-57-amd64", time.Minute); err != nil {
		t.Fatal(err)
	}
	tr, err := f.Arm("6.1.0-56-amd64")
	if tr != nil || err != nil {
		t.Fatalf("Arm on another kernel = %+v, %v; want nothing armed", tr, err)
	}
	if p, _ := f.Planned(); p != nil {
		t.Errorf("plan still there after a boot: %+v", p)
	}
	if tr, err := f.Arm("6.1.0-57-amd64"); tr != nil || err != nil {
		t.Errorf("second Arm = %+v, %v; want nothing (the plan is used up)", tr, err)
	}
	if tr, err := f.Disarm(); tr != nil || err != nil {
		t.Errorf("Disarm with nothing armed = %+v, %v; want a no-op", tr, err)
	}
}

// TestArmBrokenRecord: a record that is not a trial is refused with its
// path and removed, so that no boot reads it again.
func TestArmBrokenRecord(t *testing.T) {
	f := testFiles(t)
	path := f.TrialPath()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := f.Arm("6.1.0-57-amd64")
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Arm(broken record) = %v, want an error naming %s", err, path)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("broken record still there: %v", err)
	}
}

// TestArmNoDevice: the device is not a watchdog (a regular file here):
// the ioctls fail and Arm says so, without claiming it armed anything.
func TestArmNotAWatchdog(t *testing.T) {
	f := testFiles(t)
	if err := f.Plan("6.1.0-57-amd64", time.Minute); err != nil {
		t.Fatal(err)
	}
	dev := f.Device
	os.MkdirAll(filepath.Dir(dev), 0o755)
	if err := os.WriteFile(dev, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := f.Arm("6.1.0-57-amd64")
	if tr != nil || err == nil || !strings.Contains(err.Error(), "not arming") {
		t.Errorf("Arm on a regular file = %+v, %v; want a refusal", tr, err)
	}
	if a, _ := f.Armed(); a != nil {
		t.Errorf("Armed = %+v after a refusal", a)
	}
}

// testFiles are a host's files in a temporary folder, the state and run
// folders apart, as stent's --state-dir and --run-dir are.
func testFiles(t *testing.T) Files {
	root := t.TempDir()
	return Files{StateDir: filepath.Join(root, "var/lib/stent"), RunDir: filepath.Join(root, "run/stent"), Device: filepath.Join(root, "dev/watchdog")}
}
