package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

// fakeKernels is a host's package manager and boot loader in memory.
type fakeKernels struct {
	mu         sync.Mutex
	running    string
	installed  []string
	def        string
	once       string
	knownGood  string
	installErr error
	hold       chan struct{} // Install waits for it to close, if set
	calls      []string
}

func (f *fakeKernels) call(s string) { f.calls = append(f.calls, s) }

func (f *fakeKernels) Status(context.Context) (*api.KernelCheckin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ks := &api.KernelCheckin{Running: f.running, Default: f.def, KnownGood: f.knownGood}
	for _, r := range f.installed {
		ks.Installed = append(ks.Installed, api.InstalledKernel{Release: r, Package: "linux-image-" + r})
	}
	if f.installed[len(f.installed)-1] != f.running {
		ks.RebootReasons = []string{api.RebootNewerKernel}
	}
	return ks, nil
}

func (f *fakeKernels) Install(_ context.Context, k api.DesiredKernel) (string, error) {
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("install " + k.Release)
	if f.installErr != nil {
		return "", f.installErr
	}
	f.installed = append(f.installed, k.Release)
	return "linux-image-" + k.Release + "=" + k.Version, nil
}

func (f *fakeKernels) BootOnce(_ context.Context, r string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("boot-once " + r)
	f.once = r
	return nil
}

func (f *fakeKernels) Confirm(_ context.Context, r string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("confirm " + r)
	f.def, f.knownGood = r, r
	return nil
}

func (f *fakeKernels) Cleanup(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("cleanup")
	return nil
}

func (f *fakeKernels) Reboot(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("reboot")
	return nil
}

// boot simulates the reboot: the one-shot entry if the kernel boots,
// else the default.
func (f *fakeKernels) boot(newBoots bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = f.def
	if f.once != "" && newBoots {
		f.running = f.once
	}
	f.once = ""
}

// leaseServer answers reboot lease requests as told and records reports.
type leaseServer struct {
	mu       sync.Mutex
	grant    bool
	wait     string
	requests []api.LeaseRequest
	reports  []api.Report
}

func (s *leaseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case api.PathRebootLease:
		var lr api.LeaseRequest
		json.NewDecoder(r.Body).Decode(&lr)
		s.requests = append(s.requests, lr)
		resp := api.LeaseResponse{Wait: s.wait}
		if s.grant && !lr.Release {
			resp = api.LeaseResponse{Granted: true, Lease: "l_1", ExpiresAt: time.Now().Add(time.Hour)}
		}
		json.NewEncoder(w).Encode(resp)
	case api.PathReport:
		var rep api.Report
		json.NewDecoder(r.Body).Decode(&rep)
		s.reports = append(s.reports, rep)
		json.NewEncoder(w).Encode(api.ReportResponse{})
	default:
		http.NotFound(w, r)
	}
}

func (s *leaseServer) lastReport(t *testing.T) api.Report {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reports) == 0 {
		t.Fatal("no report sent")
	}
	return s.reports[len(s.reports)-1]
}

func (s *leaseServer) releases() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Release {
			n++
		}
	}
	return n
}

type kernelEnv struct {
	a   *Agent
	k   *fakeKernels
	srv *leaseServer
	dir string
}

func newKernelEnv(t *testing.T) *kernelEnv {
	t.Helper()
	ls := &leaseServer{wait: "outside window tue (opens 2026-12-08T03:00:00Z)"}
	srv := httptest.NewTLSServer(ls)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	k := &fakeKernels{running: "6.1.0-56-amd64", installed: []string{"6.1.0-56-amd64"}, def: "6.1.0-56-amd64"}
	hooks := Hooks{PreReboot: filepath.Join(dir, "pre-reboot.d"), PostReboot: filepath.Join(dir, "post-reboot.d"),
		BlockFiles: []string{filepath.Join(dir, "no-reboot")}, Timeout: 2 * time.Second}
	a, err := New(Config{Runtime: &busyRuntime{}, Verifier: manifestVerifier{}, Dir: dir, HTTPClient: srv.Client(), State: &MemState{},
		Kernel: k, Hooks: hooks, HealthDelay: time.Millisecond}, &Credentials{Server: srv.URL, Credential: "sth_x"})
	if err != nil {
		t.Fatal(err)
	}
	if a.st, err = a.cfg.State.Load(); err != nil {
		t.Fatal(err)
	}
	a.bootID = "boot-1"
	return &kernelEnv{a: a, k: k, srv: ls, dir: dir}
}

func (e *kernelEnv) hook(t *testing.T, dir, name, script string) {
	t.Helper()
	d := filepath.Join(e.dir, dir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// reboot simulates the host coming back: a new boot id, the kernel the
// boot loader picks, and an agent that starts again from its saved state.
func (e *kernelEnv) reboot(t *testing.T, newBoots bool, n int) {
	t.Helper()
	e.k.boot(newBoots)
	e.a.bootID = fmt.Sprintf("boot-%d", n)
	st, err := e.a.cfg.State.Load()
	if err != nil {
		t.Fatal(err)
	}
	e.a.st = st
}

// step is one kernelStep, with a kernel install it starts waited for and
// its outcome recorded, as the agent's loop does when the install wakes it.
func (e *kernelEnv) step(ctx context.Context, dk *api.DesiredKernel) time.Time {
	next := e.a.kernelStep(ctx, dk)
	if in := e.a.installing; in != nil {
		<-in.done
		<-e.a.wake
		next = e.a.kernelStep(ctx, dk)
	}
	return next
}

var desired57 = &api.DesiredKernel{Rollout: "k_1", Release: "6.1.0-57-amd64", Version: "6.1.192-3", Packages: []string{"linux-image-6.1.0-57-amd64"}}

// TestKernelUpdate: install, wait for the lease, pre-reboot hook, one-shot
// boot, reboot; then, on the new kernel, post-reboot hook, made the
// default, reported healthy, lease released, old kernels cleaned up.
func TestKernelUpdate(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	marker := filepath.Join(e.dir, "drained")
	e.hook(t, "pre-reboot.d", "10-drain", "echo drained > "+marker)
	e.hook(t, "post-reboot.d", "10-check", "test -e "+marker)

	next := e.step(ctx, desired57)
	if rep := e.srv.lastReport(t); rep.Action != api.ActionKernelInstall || rep.Result != api.ResultOK || rep.Rollout != "k_1" || rep.Name != "6.1.0-57-amd64" {
		t.Errorf("report after install = %+v, want kernel-install ok for k_1 6.1.0-57-amd64", rep)
	}
	if slices.Contains(e.k.calls, "reboot") || e.a.leaseWait == "" || next.IsZero() {
		t.Fatalf("without a lease: calls %v, wait %q, next %v; want no reboot, the server's reason kept, a time to ask again", e.k.calls, e.a.leaseWait, next)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("pre-reboot hook ran without a lease")
	}
	// Asking again does not install again.
	e.step(ctx, desired57)
	if n := strings.Count(strings.Join(e.k.calls, ","), "install"); n != 1 {
		t.Errorf("installs = %d, want 1: %v", n, e.k.calls)
	}

	e.srv.grant = true
	e.step(ctx, desired57)
	// A host new to Stent first records its healthy running kernel as the
	// known-good one.
	if want := []string{"confirm 6.1.0-56-amd64", "install 6.1.0-57-amd64", "boot-once 6.1.0-57-amd64", "reboot"}; !slices.Equal(e.k.calls, want) {
		t.Fatalf("calls = %v, want %v", e.k.calls, want)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("pre-reboot hook did not run before the reboot")
	}
	if p := e.a.st.Kernel.Boot; p == nil || p.To != "6.1.0-57-amd64" || p.From != "6.1.0-56-amd64" || p.Lease != "l_1" {
		t.Fatalf("pending boot = %+v, want 56 -> 57 with lease l_1", p)
	}
	if kc := e.a.kernelCheckin(ctx); kc.Lease != "l_1" {
		t.Errorf("check-in lease = %q, want l_1", kc.Lease)
	}

	e.reboot(t, true, 2)
	e.step(ctx, desired57)
	if rep := e.srv.lastReport(t); rep.Action != api.ActionKernelBoot || rep.Result != api.ResultOK || rep.Name != "6.1.0-57-amd64" {
		t.Errorf("report after the boot = %+v, want kernel-boot ok", rep)
	}
	if e.k.def != "6.1.0-57-amd64" || !slices.Contains(e.k.calls, "cleanup") {
		t.Errorf("after a healthy boot: default %s, calls %v; want 57 the default and a cleanup", e.k.def, e.k.calls)
	}
	if e.srv.releases() != 1 {
		t.Errorf("lease releases = %d, want 1", e.srv.releases())
	}
	lb := e.a.kernelCheckin(ctx).LastBoot
	if lb == nil || lb.Result != api.ResultOK || lb.Booted != "6.1.0-57-amd64" || e.a.st.Kernel.Boot != nil {
		t.Errorf("last boot = %+v, pending %+v; want ok on 57, nothing pending", lb, e.a.st.Kernel.Boot)
	}
	// Running the desired kernel: nothing more to do.
	n := len(e.k.calls)
	e.step(ctx, desired57)
	if len(e.k.calls) != n {
		t.Errorf("on the desired kernel the agent still acted: %v", e.k.calls[n:])
	}
}

// TestKernelInstallInBackground: apt may take minutes; the install runs
// beside the check-ins, is started once, and wakes the agent when it ends.
func TestKernelInstallInBackground(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.k.hold = make(chan struct{})
	next := e.a.kernelStep(ctx, desired57)
	if e.a.installing == nil || next.IsZero() || time.Until(next) > installPoll {
		t.Fatalf("kernelStep during the install: installing %v, next in %v; want an install under way and a step again within %v",
			e.a.installing != nil, time.Until(next), installPoll)
	}
	// The agent's loop goes on: check-ins carry the kernel situation, and
	// further steps neither wait for apt nor start a second install.
	if kc := e.a.kernelCheckin(ctx); kc == nil || kc.Running != "6.1.0-56-amd64" {
		t.Fatalf("check-in during the install: %+v", kc)
	}
	done := make(chan struct{})
	go func() { e.a.kernelStep(ctx, desired57); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("kernelStep waited for the install")
	}
	close(e.k.hold)
	select {
	case <-e.a.wake:
	case <-time.After(10 * time.Second):
		t.Fatal("the install ended without waking the agent")
	}
	e.a.kernelStep(ctx, desired57)
	if rep := e.srv.lastReport(t); rep.Action != api.ActionKernelInstall || rep.Result != api.ResultOK {
		t.Errorf("report after the install = %+v, want kernel-install ok", rep)
	}
	if n := strings.Count(strings.Join(e.k.calls, ","), "install"); n != 1 || e.a.installing != nil {
		t.Errorf("installs = %d (%v), installing %v; want exactly one, ended", n, e.k.calls, e.a.installing != nil)
	}
	if op := e.a.st.Ops[opKey(api.ActionKernelInstall, "k_1", "6.1.0-57-amd64")]; op == nil || !op.Done || op.Result != api.ResultOK {
		t.Errorf("install op = %+v, want done and ok (saved for the next start)", op)
	}
}

// TestKernelAlreadyInstalled: a rollout's kernel that is on the host
// already (installed by hand or by another tool, not yet booted) still goes
// through the package manager once, so that the server hears the host is
// ready: before, the agent went straight to asking for a lease, and the
// server, waiting for the install's report, kept the host "installing"
// forever (seen on a real Debian guest, internal/fleetvm).
func TestKernelAlreadyInstalled(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.k.installed = append(e.k.installed, "6.1.0-57-amd64")
	e.step(ctx, desired57)
	if rep := e.srv.lastReport(t); rep.Action != api.ActionKernelInstall || rep.Result != api.ResultOK || rep.Name != "6.1.0-57-amd64" {
		t.Fatalf("report = %+v, want kernel-install ok for 6.1.0-57-amd64", rep)
	}
	e.srv.grant = true
	e.step(ctx, desired57)
	if want := []string{"confirm 6.1.0-56-amd64", "install 6.1.0-57-amd64", "boot-once 6.1.0-57-amd64", "reboot"}; !slices.Equal(e.k.calls, want) {
		t.Fatalf("calls = %v, want %v", e.k.calls, want)
	}
}

// TestKernelInstallFailedNoReboot: after a failed install the agent does
// not reboot into the release, even when a build of it is on the host.
func TestKernelInstallFailedNoReboot(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.k.installed = append(e.k.installed, "6.1.0-57-amd64")
	e.k.installErr = errors.New("E: Version '6.1.192-3' for 'linux-image-6.1.0-57-amd64' was not found")
	e.srv.grant = true
	e.step(ctx, desired57)
	e.step(ctx, desired57)
	if rep := e.srv.lastReport(t); rep.Action != api.ActionKernelInstall || rep.Result != api.ResultFailed {
		t.Fatalf("report = %+v, want kernel-install failed", rep)
	}
	if slices.Contains(e.k.calls, "reboot") || len(e.srv.requests) != 0 {
		t.Errorf("calls %v, lease requests %d; want no lease asked and no reboot after a failed install", e.k.calls, len(e.srv.requests))
	}
}

// TestKernelFallback: a kernel that does not come back leaves the host on
// the old one (the one-shot entry is spent): reported fell-back with the
// reason, lease released, the new kernel never made the default.
func TestKernelFallback(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.srv.grant = true
	e.step(ctx, desired57)
	e.reboot(t, false, 2) // 57 panicked; GRUB's next boot is the default
	e.step(ctx, desired57)
	rep := e.srv.lastReport(t)
	if rep.Action != api.ActionKernelBoot || rep.Result != api.ResultFellBack || !strings.Contains(rep.Error, "6.1.0-57-amd64 did not come back") ||
		!strings.Contains(rep.Error, "returned to 6.1.0-56-amd64") {
		t.Errorf("report = %+v, want kernel-boot fell-back naming 57 and 56", rep)
	}
	if slices.Contains(e.k.calls, "confirm 6.1.0-57-amd64") || e.k.def != "6.1.0-56-amd64" || slices.Contains(e.k.calls, "cleanup") {
		t.Errorf("after a fallback: calls %v, default %s; want no confirm, no cleanup, 56 still the default", e.k.calls, e.k.def)
	}
	if e.srv.releases() != 1 {
		t.Errorf("lease releases = %d, want 1", e.srv.releases())
	}
}

// TestKernelUnhealthy: the new kernel boots but a post-reboot hook fails:
// the agent reboots back into the default (old) kernel and reports the
// fallback with the hook's failure.
func TestKernelUnhealthy(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.hook(t, "post-reboot.d", "50-app", "echo app did not start >&2; exit 3")
	e.srv.grant = true
	e.step(ctx, desired57)
	e.reboot(t, true, 2)
	e.step(ctx, desired57)
	if got := strings.Count(strings.Join(e.k.calls, ","), "reboot"); got != 2 || slices.Contains(e.k.calls, "confirm 6.1.0-57-amd64") {
		t.Fatalf("calls = %v, want a second reboot and no confirm", e.k.calls)
	}
	e.reboot(t, true, 3)
	if e.k.running != "6.1.0-56-amd64" {
		t.Fatalf("running %s after the reboot back, want 56", e.k.running)
	}
	e.step(ctx, desired57)
	rep := e.srv.lastReport(t)
	if rep.Result != api.ResultFellBack || !strings.Contains(rep.Error, "came up unhealthy") || !strings.Contains(rep.Error, "50-app exited 3: app did not start") {
		t.Errorf("report = %+v, want fell-back quoting the hook", rep)
	}
}

// TestKernelBlockers: a block file stops the lease request; a failing
// pre-reboot hook postpones the reboot, gives the lease back and is
// reported as a blocker; a hook that hangs is killed at its timeout.
func TestKernelBlockers(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.srv.grant = true
	if err := os.WriteFile(filepath.Join(e.dir, "no-reboot"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.step(ctx, desired57)
	if len(e.srv.requests) != 0 || slices.Contains(e.k.calls, "reboot") {
		t.Fatalf("with the block file: lease requests %v, calls %v; want none, no reboot", e.srv.requests, e.k.calls)
	}
	if b := e.a.kernelCheckin(ctx).Blockers; len(b) != 1 || !strings.Contains(b[0], "no-reboot exists") {
		t.Errorf("blockers = %q, want the file", b)
	}
	os.Remove(filepath.Join(e.dir, "no-reboot"))

	e.hook(t, "pre-reboot.d", "10-drain", "echo load balancer refused >&2; exit 1")
	e.step(ctx, desired57)
	if slices.Contains(e.k.calls, "reboot") || slices.Contains(e.k.calls, "boot-once 6.1.0-57-amd64") || e.srv.releases() != 1 {
		t.Fatalf("failing pre-reboot hook: calls %v, releases %d; want no reboot, lease given back", e.k.calls, e.srv.releases())
	}
	if b := e.a.kernelCheckin(ctx).Blockers; len(b) != 1 || !strings.Contains(b[0], "10-drain exited 1: load balancer refused") {
		t.Errorf("blockers = %q, want the hook's failure", b)
	}

	e.hook(t, "pre-reboot.d", "10-drain", "sleep 60")
	start := time.Now()
	e.step(ctx, desired57)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a hanging hook held the agent for %v; want it killed at its 2s timeout", took)
	}
	if b := e.a.kernelCheckin(ctx).Blockers; len(b) != 1 || !strings.Contains(b[0], "ran longer than 2s") {
		t.Errorf("blockers = %q, want the hook's timeout", b)
	}
}

// TestKernelInstallFails: the package manager's message is reported once;
// nothing is retried for the same rollout, nothing rebooted.
func TestKernelInstallFails(t *testing.T) {
	e := newKernelEnv(t)
	ctx := context.Background()
	e.k.installErr = errors.New("apt-get install: E: Failed to fetch http://10.0.2.2/linux-image.deb  Could not connect")
	e.srv.grant = true
	e.step(ctx, desired57)
	e.step(ctx, desired57)
	rep := e.srv.lastReport(t)
	if rep.Action != api.ActionKernelInstall || rep.Result != api.ResultFailed || !strings.Contains(rep.Error, "Could not connect") {
		t.Errorf("report = %+v, want kernel-install failed with apt's message", rep)
	}
	if got := strings.Join(e.k.calls, ","); got != "confirm 6.1.0-56-amd64,install 6.1.0-57-amd64" {
		t.Errorf("calls = %s, want one install and nothing else", got)
	}
}

func TestPromSeries(t *testing.T) {
	answers := map[string]string{
		"firing": `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"1"]}]}}`,
		"quiet":  `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		"bad":    `{"status":"error","error":"parse error at char 3"}`,
		"html":   `<html>proxy</html>`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(answers[r.URL.Query().Get("query")]))
	}))
	defer srv.Close()
	for _, tt := range []struct {
		q    string
		n    int
		fail bool
	}{{"firing", 2, false}, {"quiet", 0, false}, {"bad", 0, true}, {"html", 0, true}} {
		n, err := promSeries(context.Background(), srv.Client(), srv.URL, tt.q)
		if n != tt.n || (err != nil) != tt.fail {
			t.Errorf("promSeries(%s) = %d, %v; want %d, error %v", tt.q, n, err, tt.n, tt.fail)
		}
	}
	if _, err := promSeries(context.Background(), srv.Client(), "http://127.0.0.1:1", "up"); err == nil {
		t.Error("promSeries(unreachable) = nil error; an unreachable Prometheus must block")
	}
}

type recordRunner struct{ calls [][]string }

func (r *recordRunner) Run(_ context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	r.calls = append(r.calls, append(append([]string{name}, args...), env...))
	return nil, nil, nil
}

// TestSystemdRunner: commands that change the system leave the agent's
// sandbox through systemd-run with their environment; read-only queries
// run directly.
func TestSystemdRunner(t *testing.T) {
	rec := &recordRunner{}
	r := SystemdRunner{Inner: rec}
	ctx := context.Background()
	r.Run(ctx, "apt-get", []string{"install", "-y", "linux-image-6.1.0-57-amd64"}, []string{"DEBIAN_FRONTEND=noninteractive"})
	r.Run(ctx, "dpkg-query", []string{"-W"}, nil)
	r.Run(ctx, "apt-mark", []string{"showhold"}, nil)
	r.Run(ctx, "apt-mark", []string{"hold", "x"}, nil)
	r.Run(ctx, "grub-editenv", []string{"/boot/grub/grubenv", "list"}, nil)
	r.Run(ctx, "rpm", []string{"-e", "kernel-core"}, nil)
	want := [][]string{
		{"systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec", "--property=KillMode=control-group",
			"--setenv=DEBIAN_FRONTEND=noninteractive", "--", "apt-get", "install", "-y", "linux-image-6.1.0-57-amd64"},
		{"dpkg-query", "-W"},
		{"apt-mark", "showhold"},
		{"systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec", "--property=KillMode=control-group", "--", "apt-mark", "hold", "x"},
		{"grub-editenv", "/boot/grub/grubenv", "list"},
		{"systemd-run", "--wait", "--pipe", "--quiet", "--collect", "--service-type=exec", "--property=KillMode=control-group", "--", "rpm", "-e", "kernel-core"},
	}
	if len(rec.calls) != len(want) {
		t.Fatalf("calls = %q, want %q", rec.calls, want)
	}
	for i := range want {
		if !slices.Equal(rec.calls[i], want[i]) {
			t.Errorf("call %d = %q, want %q", i, rec.calls[i], want[i])
		}
	}
}
