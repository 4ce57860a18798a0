package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/patcher"
)

// busyRuntime is a runtime that can be busy: a patch in transition, or the
// host's lock held by another stent operation.
type busyRuntime struct {
	mu         sync.Mutex
	transition string // a live patch in transition
	lockHolder string // another operation holding the lock
	loaded     bool   // lp_x is loaded
	applies    int
	reverts    int
}

func (r *busyRuntime) set(transition, lockHolder string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.transition, r.lockHolder = transition, lockHolder
}

func (r *busyRuntime) Status(context.Context) (*RuntimeStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := &RuntimeStatus{KernelRelease: "6.1.0-56-amd64", Patches: []api.PatchState{}}
	if r.transition != "" {
		rs.Patches = append(rs.Patches, api.PatchState{Name: r.transition, Enabled: true, Transition: true})
	}
	if r.loaded {
		rs.Patches = append(rs.Patches, api.PatchState{Name: "lp_x", Enabled: true, Level: 1})
	}
	return rs, nil
}

func (r *busyRuntime) Apply(context.Context, string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lockHolder != "" {
		return "", fmt.Errorf("%w: %s holds this host's live patch lock", ErrBusy, r.lockHolder)
	}
	r.applies++
	return "lp_x", nil
}

func (r *busyRuntime) Revert(context.Context, string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lockHolder != "" {
		return fmt.Errorf("%w: %s holds this host's live patch lock", ErrBusy, r.lockHolder)
	}
	r.loaded = false
	r.reverts++
	return nil
}

// manifestVerifier accepts any bundle as lp_x level 1 for the test kernel.
type manifestVerifier struct{}

func (manifestVerifier) Verify([]byte) (*api.BundleInfo, error) {
	return &api.BundleInfo{Name: "lp_x", KernelRelease: "6.1.0-56-amd64", Level: 1}, nil
}

// TestBusyTimeout: while the runtime is busy (a patch in transition, the
// host's lock held) the agent waits without reporting; once it has been
// busy for BusyTimeout, counted for each desired action from its own first
// busy answer, the action is reported failed with how long and why. A
// runtime that becomes free in time applies normally.
func TestBusyTimeout(t *testing.T) {
	body := []byte("a bundle")
	sum := sha256.Sum256(body)
	bundleID := hex.EncodeToString(sum[:])
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	rt := &busyRuntime{}
	const timeout = 300 * time.Millisecond
	a, err := New(Config{Runtime: rt, Verifier: manifestVerifier{}, Dir: t.TempDir(), HTTPClient: srv.Client(), State: &MemState{}, BusyTimeout: timeout},
		&Credentials{Server: srv.URL, Credential: "sth_x"})
	if err != nil {
		t.Fatal(err)
	}
	if a.st, err = a.cfg.State.Load(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	desired := func(rollout string) api.DesiredState {
		return api.DesiredState{ETag: rollout, Patches: []api.DesiredPatch{{Rollout: rollout, Action: api.ActionApply, Name: "lp_x", Level: 1,
			KernelRelease: "6.1.0-56-amd64", Bundle: bundleID, Size: int64(len(body))}}}
	}
	// waitBusy reconciles d while the runtime is busy until the action is
	// reported, and returns the report and how long that took.
	waitBusy := func(d api.DesiredState) (api.Report, time.Duration) {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 20*timeout {
			n := len(a.st.Pending)
			_, err := a.reconcile(ctx, d)
			if len(a.st.Pending) > n {
				if err != nil {
					t.Fatalf("reconcile reported and returned %v", err)
				}
				return a.st.Pending[n], time.Since(start)
			}
			if !errors.Is(err, ErrBusy) {
				t.Fatalf("reconcile on a busy runtime = %v, want an error wrapping ErrBusy", err)
			}
			time.Sleep(timeout / 10)
		}
		t.Fatalf("no report after %v of a busy runtime", 20*timeout)
		return api.Report{}, 0
	}

	for _, tt := range []struct {
		name, transition, lock, why string
	}{
		{"transition", "lp_other", "", "live patch lp_other is in transition"},
		{"lock", "", "stent apply (pid 42)", "stent apply (pid 42) holds this host's live patch lock"},
	} {
		rt.set(tt.transition, tt.lock)
		rep, took := waitBusy(desired("r_" + tt.name))
		if took < timeout {
			t.Errorf("%s: reported after %v, before the busy timeout of %v", tt.name, took, timeout)
		}
		if rep.Result != api.ResultFailed || rep.Rollout != "r_"+tt.name || !strings.Contains(rep.Error, "busy for") ||
			!strings.Contains(rep.Error, timeout.String()) || !strings.Contains(rep.Error, tt.why) {
			t.Errorf("%s: report = %+v, want apply failed, saying busy for how long (timeout %v) and %q", tt.name, rep, timeout, tt.why)
		}
	}
	if rt.applies != 0 {
		t.Errorf("a busy runtime applied %d times", rt.applies)
	}

	// The next desired apply counts from its own first busy answer, not
	// from the earlier ones; freed before its timeout, it applies.
	rt.set("lp_other", "")
	d := desired("r_free")
	if _, err := a.reconcile(ctx, d); !errors.Is(err, ErrBusy) {
		t.Fatalf("reconcile(r_free) on a busy runtime = %v, want ErrBusy", err)
	}
	time.Sleep(timeout / 2)
	rt.set("", "stent revert (pid 43)") // busy for another reason: still one wait
	if _, err := a.reconcile(ctx, d); !errors.Is(err, ErrBusy) {
		t.Fatalf("reconcile(r_free), lock held = %v, want ErrBusy", err)
	}
	rt.set("", "")
	n := len(a.st.Pending)
	if _, err := a.reconcile(ctx, d); err != nil {
		t.Fatalf("reconcile(r_free) once free = %v", err)
	}
	if rep := a.st.Pending[n]; rep.Result != api.ResultOK || rt.applies != 1 {
		t.Errorf("freed in time: report %+v, %d applies; want ok, one apply", rep, rt.applies)
	}
	if len(a.busySince) != 0 {
		t.Errorf("busy clocks left after every action ended: %v", a.busySince)
	}
}

// TestBusyRevertWaits: a revert is not bounded by BusyTimeout. Reported
// failed it would never be tried again (the entry is done while the
// rollout keeps it), so the patch would stay loaded for good once the
// runtime is free; it waits instead, and reverts when it can.
func TestBusyRevertWaits(t *testing.T) {
	rt := &busyRuntime{loaded: true}
	const timeout = 50 * time.Millisecond
	a, err := New(Config{Runtime: rt, Verifier: manifestVerifier{}, Dir: t.TempDir(), State: &MemState{}, BusyTimeout: timeout},
		&Credentials{Server: "https://127.0.0.1:1", Credential: "sth_x"})
	if err != nil {
		t.Fatal(err)
	}
	if a.st, err = a.cfg.State.Load(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := api.DesiredState{ETag: "x", Patches: []api.DesiredPatch{{Rollout: "r_1", Action: api.ActionRevert, Name: "lp_x", Level: 1, KernelRelease: "6.1.0-56-amd64"}}}
	for _, why := range []struct{ transition, lock string }{{"lp_other", ""}, {"", "stent apply (pid 42)"}} {
		rt.set(why.transition, why.lock)
		for start := time.Now(); time.Since(start) < 3*timeout; time.Sleep(timeout / 5) {
			if _, err := a.reconcile(ctx, d); !errors.Is(err, ErrBusy) {
				t.Fatalf("reconcile(revert) busy (%+v) for %v = %v, want ErrBusy", why, time.Since(start), err)
			}
		}
		if len(a.st.Pending) != 0 {
			t.Fatalf("busy revert reported: %+v; want it to wait", a.st.Pending)
		}
	}
	rt.set("", "")
	if _, err := a.reconcile(ctx, d); err != nil {
		t.Fatalf("reconcile(revert) once free = %v", err)
	}
	if len(a.st.Pending) != 1 || a.st.Pending[0].Result != api.ResultOK || rt.reverts != 1 || rt.loaded {
		t.Errorf("once free: reports %+v, %d reverts, loaded %v; want one ok report, one revert", a.st.Pending, rt.reverts, rt.loaded)
	}
}

// TestPatcherRuntimeLockWait: while another stent operation holds the
// host's lock, the real runtime's Apply and Revert give up after LockWait
// with ErrBusy, having done nothing, instead of waiting as long as the
// agent runs; once the lock is free they go on (and fail here for other
// reasons: the fake root has no kernel).
func TestPatcherRuntimeLockWait(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	rt := patcher.New(patcher.Config{Root: dir, StateDir: filepath.Join(dir, "state"), RunDir: run, KeysDir: filepath.Join(dir, "keys")})
	pr := PatcherRuntime{RT: rt, LockWait: 200 * time.Millisecond}
	f, err := os.OpenFile(filepath.Join(run, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	ops := map[string]func() error{
		"Apply":  func() error { _, err := pr.Apply(ctx, filepath.Join(dir, "lp_x.stb")); return err },
		"Revert": func() error { return pr.Revert(ctx, "lp_x") },
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		if took := time.Since(start); !errors.Is(err, ErrBusy) || took < pr.LockWait {
			t.Errorf("%s with the lock held = %v after %v; want ErrBusy after %v", name, err, took, pr.LockWait)
		}
		// The holder is this process, through another open of the lock file.
		if holder := fmt.Sprintf("(pid %d) holds this host's live patch lock", os.Getpid()); err == nil || !strings.Contains(err.Error(), holder) {
			t.Errorf("%s with the lock held = %v, want it to name the holder: %q", name, err, holder)
		}
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	for name, op := range ops {
		if err := op(); err == nil || errors.Is(err, ErrBusy) {
			t.Errorf("%s with the lock free = %v, want another error (no kernel under the fake root)", name, err)
		}
	}
}
