package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/api"
)

func TestCredentialsFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	if _, err := LoadCredentials(dir); err == nil {
		t.Fatal("LoadCredentials(empty) = nil error, want ErrNotEnrolled")
	}
	c := &Credentials{Server: "https://s:8443", HostID: "h_1", Credential: "sth_x", Fingerprint: "sha256:00", EnrolledAt: time.Unix(1, 0).UTC()}
	if err := SaveCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, credentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode = %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(c, got); d != "" {
		t.Errorf("LoadCredentials mismatch (-want +got):\n%s", d)
	}
}

func TestStateStores(t *testing.T) {
	s := &State{BootID: "b", Ops: map[string]*Op{"apply/r/p": {RequestID: "q", Action: api.ActionApply, Done: true, Result: api.ResultOK}},
		Pending: []api.Report{{RequestID: "q", Action: api.ActionApply, Result: api.ResultOK}}}
	for name, ss := range map[string]StateStore{"file": FileState{Path: filepath.Join(t.TempDir(), "x", "state.json")}, "mem": &MemState{}} {
		empty, err := ss.Load()
		if err != nil || len(empty.Ops) != 0 || empty.Ops == nil {
			t.Errorf("%s: Load() before Save = %+v, %v; want empty state with an Ops map", name, empty, err)
		}
		if err := ss.Save(s); err != nil {
			t.Fatal(err)
		}
		got, err := ss.Load()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(s, got); d != "" {
			t.Errorf("%s: Load() mismatch (-want +got):\n%s", name, d)
		}
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		max      time.Duration
		lo, hi   time.Duration
	}{
		{1, time.Minute, 500 * time.Millisecond, time.Second},
		{3, time.Minute, 2 * time.Second, 4 * time.Second},
		{10, time.Minute, 30 * time.Second, time.Minute},
		{100, time.Minute, 30 * time.Second, time.Minute},
		{5, 3 * time.Second, 1500 * time.Millisecond, 3 * time.Second},
	}
	for _, tt := range tests {
		for i := 0; i < 50; i++ {
			if got := backoff(tt.failures, tt.max); got < tt.lo || got > tt.hi {
				t.Fatalf("backoff(%d, %v) = %v, want within [%v, %v]", tt.failures, tt.max, got, tt.lo, tt.hi)
			}
		}
	}
}
