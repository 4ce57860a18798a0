package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store/storetest"
)

// fakeClock is the server's clock in reboot tests: windows open and leases
// expire when the test says.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const (
	newKernel  = "6.1.0-57-amd64"
	newVersion = "6.1.192-3"
)

var berlin, _ = time.LoadLocation("Europe/Berlin")

// rebootHost is a simulated agent speaking the kernel and lease contract.
type rebootHost struct {
	cred *agent.Credentials
	cl   *api.Client
	name string
	boot string
	good string // the kernel its agent judged healthy (KernelCheckin.KnownGood)
}

func (e *env) rebootHosts(t *testing.T, prefix string, n int) []*rebootHost {
	creds, cls := e.manualHosts(prefix, n)
	var out []*rebootHost
	for i := range creds {
		h := &rebootHost{cred: creds[i], cl: cls[i], name: fmt.Sprintf("%s-%d", prefix, i), boot: "boot-1"}
		h.sync(t, kernel) // with its hostname and kernel check-in
		out = append(out, h)
	}
	return out
}

func (h *rebootHost) sync(t *testing.T, running string) api.SyncResponse {
	t.Helper()
	var resp api.SyncResponse
	c := api.Checkin{Hostname: h.name, KernelRelease: running, BootID: h.boot, Health: api.HealthOK, Kernel: &api.KernelCheckin{Running: running, KnownGood: h.good}}
	if err := h.cl.Do(context.Background(), http.MethodPost, api.PathSync, c, &resp); err != nil {
		t.Fatalf("%s sync: %v", h.name, err)
	}
	return resp
}

func (h *rebootHost) report(t *testing.T, rollout, action, result, msg string) {
	t.Helper()
	rep := api.Report{RequestID: fmt.Sprintf("%s-%s-%s-%d", h.name, action, result, time.Now().UnixNano()), Action: action, Rollout: rollout,
		Name: newKernel, Result: result, Error: msg, At: time.Now()}
	if err := h.cl.Do(context.Background(), http.MethodPost, api.PathReport, rep, &api.ReportResponse{}); err != nil {
		t.Fatalf("%s report %s %s: %v", h.name, action, result, err)
	}
}

func (h *rebootHost) lease(t *testing.T, req api.LeaseRequest) api.LeaseResponse {
	t.Helper()
	var resp api.LeaseResponse
	if err := h.cl.Do(context.Background(), http.MethodPost, api.PathRebootLease, req, &resp); err != nil {
		t.Fatalf("%s lease: %v", h.name, err)
	}
	return resp
}

func (e *env) auditCount(action string) int {
	e.t.Helper()
	return len(e.audit(api.AuditQuery{Action: action, Limit: 10000}))
}

func (e *env) kernelRollout(id string) api.KernelRollout {
	e.t.Helper()
	kr, err := e.admin.KernelRollout(context.Background(), id)
	e.ok(err)
	return *kr
}

func (e *env) createKernelRollout(req api.KernelRolloutRequest) api.KernelRollout {
	e.t.Helper()
	kr, err := e.admin.CreateKernelRollout(context.Background(), req)
	e.ok(err)
	return *kr
}

func (e *env) putWindow(w api.MaintenanceWindow) {
	e.t.Helper()
	_, err := e.admin.PutWindow(context.Background(), w)
	e.ok(err)
}

func (e *env) reboots() api.RebootStatus {
	e.t.Helper()
	st, err := e.admin.Reboots(context.Background())
	e.ok(err)
	return *st
}

// TestRebootLeases runs six simulated hosts of one group with
// max-unavailable 2 through a kernel rollout on both store engines:
// exactly two leases at a time, leases survive a restart, an expired lease
// frees the budget, healthy boots release, a fallback halts the rollout.
func TestRebootLeases(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 12, 1, 4, 0, 0, 0, berlin)} // a Tuesday, inside the window
			e := startEnv(t, envOpt{engine: eng, now: clock.Now})
			ctx := context.Background()

			// Bad windows are refused naming the field; nothing is stored.
			for _, bad := range []struct {
				w    api.MaintenanceWindow
				want string
			}{
				{api.MaintenanceWindow{When: "whenever", MaxUnavailable: "1"}, "when"},
				{api.MaintenanceWindow{When: "Tue 03:00-05:00 Europe/Berlin", MaxUnavailable: "lots"}, "max_unavailable"},
				{api.MaintenanceWindow{When: "Tue 03:00-05:00 Europe/Berlin", MaxUnavailable: "1", Selector: map[string]string{"a b": "c"}}, "selector"},
			} {
				w := bad.w
				w.Name = "web"
				_, err := e.admin.PutWindow(ctx, w)
				if status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), bad.want) {
					t.Errorf("PUT window %+v: %v, want 400 naming %s", bad.w, err, bad.want)
				}
			}
			ws, err := e.admin.Windows(ctx)
			e.ok(err)
			if len(ws) != 0 || e.auditCount("window.set") != 0 {
				t.Fatalf("after bad windows: %+v stored, want none", ws)
			}
			e.putWindow(api.MaintenanceWindow{Name: "web", When: "Tue 03:00-05:00 Europe/Berlin", MaxUnavailable: "2",
				LeaseTTL: api.Duration(10 * time.Minute)})

			hs := e.rebootHosts(t, "rb", 6)
			before := hs[0].sync(t, kernel)
			kr := e.createKernelRollout(api.KernelRolloutRequest{Release: newKernel, Version: newVersion, Reason: "CVE-2026-0001"})
			if kr.Counts[api.KernelInstalling] != 6 || kr.State != api.RolloutRunning {
				t.Fatalf("new kernel rollout = %+v, want 6 hosts installing", kr)
			}
			after := hs[0].sync(t, kernel)
			if after.Desired.ETag == before.Desired.ETag || after.Desired.Kernel == nil || after.Desired.Kernel.Release != newKernel ||
				after.Desired.Kernel.Version != newVersion || after.Desired.Kernel.Packages[0] != "linux-image-"+newKernel {
				t.Fatalf("desired state after the rollout = %+v (etag before %s), want the new kernel and a new etag", after.Desired, before.Desired.ETag)
			}
			if r := hs[0].lease(t, api.LeaseRequest{}); r.Granted || !strings.Contains(r.Wait, "installing") {
				t.Errorf("lease before the install = %+v, want a wait for the install", r)
			}
			for _, h := range hs {
				h.report(t, kr.ID, api.ActionKernelInstall, api.ResultOK, "")
			}
			if kr = e.kernelRollout(kr.ID); kr.Counts[api.KernelInstalled] != 6 {
				t.Fatalf("after six installs: %+v", kr.Counts)
			}

			// Six ask together: exactly two get a lease.
			resps := make([]api.LeaseResponse, len(hs))
			var wg sync.WaitGroup
			for i, h := range hs {
				wg.Add(1)
				go func() { defer wg.Done(); resps[i] = h.lease(t, api.LeaseRequest{Rollout: kr.ID, Kernel: newKernel}) }()
			}
			wg.Wait()
			var holders, waiters []*rebootHost
			leaseOf := map[string]string{}
			for i, r := range resps {
				if r.Granted {
					holders = append(holders, hs[i])
					leaseOf[hs[i].name] = r.Lease
					if !r.ExpiresAt.Equal(clock.Now().UTC().Add(10 * time.Minute)) {
						t.Errorf("lease expires at %v, want the window's TTL of 10m from %v", r.ExpiresAt, clock.Now())
					}
				} else {
					waiters = append(waiters, hs[i])
					if !strings.Contains(r.Wait, "2 of 2 hosts of group web rebooting") || r.Window != "web" {
						t.Errorf("refused lease = %+v, want the group's budget named", r)
					}
				}
			}
			if len(holders) != 2 {
				t.Fatalf("%d hosts granted a lease at once, want exactly 2 (max-unavailable 2): %+v", len(holders), resps)
			}
			if n := e.auditCount("reboot.lease-grant"); n != 2 {
				t.Errorf("audit has %d reboot.lease-grant entries, want 2", n)
			}
			st := e.reboots()
			leased, waiting := 0, 0
			for _, h := range st.Hosts {
				switch {
				case h.Lease != "":
					leased++
				case strings.Contains(h.Wait, "2 of 2 hosts"):
					waiting++
				}
			}
			if leased != 2 || waiting != 4 || len(st.Windows) != 1 {
				t.Errorf("reboot status: %d leased, %d waiting for the budget, %d windows; want 2, 4, 1: %+v", leased, waiting, len(st.Windows), st)
			}

			// Leases survive a restart: the holders get theirs back, the
			// others still wait.
			e.restart(0)
			e.admin.HTTP.CloseIdleConnections()
			for _, h := range holders {
				if r := h.lease(t, api.LeaseRequest{}); !r.Granted || r.Lease != leaseOf[h.name] {
					t.Errorf("%s after restart: %+v, want its lease %s back", h.name, r, leaseOf[h.name])
				}
			}
			if r := waiters[0].lease(t, api.LeaseRequest{}); r.Granted {
				t.Errorf("after restart a third host got a lease: %+v", r)
			}

			// The holders never come back: their leases expire after the TTL
			// and free the budget.
			clock.Add(11 * time.Minute)
			e.waitFor(10*time.Second, "two expired leases", func() bool { return e.auditCount("reboot.lease-expire") == 2 })
			var next []*rebootHost
			for _, h := range waiters {
				if r := h.lease(t, api.LeaseRequest{}); r.Granted {
					next = append(next, h)
				}
			}
			if len(next) != 2 {
				t.Fatalf("after the expiry %d more hosts got a lease, want 2", len(next))
			}
			kr = e.kernelRollout(kr.ID)
			if kr.Counts[api.KernelRebooting] != 2 || kr.Counts[api.KernelInstalled] != 4 {
				t.Errorf("after the expiry counts = %+v, want 2 rebooting, 4 installed", kr.Counts)
			}

			// A healthy boot report releases the lease; so does a check-in
			// from a new boot on the new kernel.
			next[0].report(t, kr.ID, api.ActionKernelBoot, api.ResultOK, "")
			next[1].boot = "boot-2"
			// Up on the new kernel but not yet judged by its agent (no
			// known-good yet): it keeps its lease and is not healthy.
			next[1].sync(t, newKernel)
			if n := e.auditCount("reboot.lease-release"); n != 1 {
				t.Errorf("a check-in on the new kernel before the agent judged the boot released the lease: %d releases, want 1", n)
			}
			next[1].good = newKernel
			next[1].sync(t, newKernel)
			if n := e.auditCount("reboot.lease-release"); n != 2 {
				t.Errorf("audit has %d reboot.lease-release entries, want 2", n)
			}
			if kr = e.kernelRollout(kr.ID); kr.Counts[api.KernelHealthy] != 2 {
				t.Errorf("after two healthy boots counts = %+v, want 2 healthy", kr.Counts)
			}
			// One of the first holders now asks again and falls back.
			fb := holders[0]
			if r := fb.lease(t, api.LeaseRequest{}); !r.Granted || r.Lease == leaseOf[fb.name] {
				t.Fatalf("%s after its lease expired and the budget freed: %+v, want a lease", fb.name, r)
			}
			fb.report(t, kr.ID, api.ActionKernelBoot, api.ResultFellBack, "fell back from 6.1.0-57-amd64 to 6.1.0-56-amd64: no healthy agent within 5m")
			kr = e.kernelRollout(kr.ID)
			if kr.State != api.RolloutHalted || !strings.Contains(kr.Halt, fb.name) || !strings.Contains(kr.Halt, "no healthy agent") {
				t.Fatalf("after a fallback the rollout = %s (%q), want halted naming %s and the reason", kr.State, kr.Halt, fb.name)
			}
			if n := e.auditCount("kernel-rollout.halted"); n != 1 {
				t.Errorf("audit has %d kernel-rollout.halted entries, want 1", n)
			}
			// No other host is told to install it or gets a lease for it.
			for _, h := range hs {
				for _, k := range kr.Targets {
					if k.Hostname == h.name && k.State == api.KernelInstalled {
						if d := h.sync(t, kernel).Desired; d.Kernel != nil {
							t.Errorf("%s still told to install %s after the halt", h.name, d.Kernel.Release)
						}
						if r := h.lease(t, api.LeaseRequest{}); r.Granted || !strings.Contains(r.Wait, "halted") {
							t.Errorf("%s lease after the halt = %+v, want refused: halted", h.name, r)
						}
					}
				}
			}
			st = e.reboots()
			for _, h := range st.Hosts {
				if h.Hostname == fb.name && (h.State != api.KernelFellBack || h.Lease != "") {
					t.Errorf("reboot status of %s = %+v, want fell-back without a lease (now %v, status at %v)", fb.name, h, clock.Now(), st.At)
				}
			}

			// A revoked host is refused and changes nothing.
			e.ok(e.admin.RevokeHost(ctx, hs[5].cred.HostID))
			err = hs[5].cl.Do(ctx, http.MethodPost, api.PathRebootLease, api.LeaseRequest{}, &api.LeaseResponse{})
			if status(err) != http.StatusUnauthorized {
				t.Errorf("lease request from a revoked host: %v, want 401", err)
			}
		})
	}
}

// TestRebootWindowOpens: outside the window a normal rollout waits (told
// when the window opens), an emergency one whose deadline comes first
// reboots at once after the required approval, and the window opening on
// the clock lets the others go.
func TestRebootWindowOpens(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 1, 6, 0, 0, 0, berlin)} // Tuesday, after the window
	e := startEnv(t, envOpt{now: clock.Now})
	e.putWindow(api.MaintenanceWindow{Name: "all", When: "Tue 03:00-05:00 Europe/Berlin", MaxUnavailable: "50%", RequireApproval: true})
	hs := e.rebootHosts(t, "wo", 4)
	normal := e.createKernelRollout(api.KernelRolloutRequest{Release: newKernel, Version: newVersion, Hosts: []string{"wo-0", "wo-1", "wo-2"}})
	deadline := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	urgent := e.createKernelRollout(api.KernelRolloutRequest{Release: newKernel, Version: newVersion, Hosts: []string{hs[3].cred.HostID},
		Emergency: true, Deadline: &deadline, Reason: "CVE-2026-0002 exploited, no live patch"})
	if normal.Counts[api.KernelInstalling] != 3 || urgent.Counts[api.KernelInstalling] != 1 {
		t.Fatalf("rollouts: %+v / %+v", normal.Counts, urgent.Counts)
	}
	if d := hs[3].sync(t, kernel).Desired.Kernel; d == nil || !d.Emergency || d.Deadline == nil || !d.Deadline.Equal(deadline) {
		t.Fatalf("emergency host's desired kernel = %+v, want emergency with the deadline", d)
	}
	for _, h := range hs[:3] {
		h.report(t, normal.ID, api.ActionKernelInstall, api.ResultOK, "")
	}
	hs[3].report(t, urgent.ID, api.ActionKernelInstall, api.ResultOK, "")

	opens := time.Date(2026, 12, 8, 3, 0, 0, 0, berlin)
	r := hs[0].lease(t, api.LeaseRequest{})
	if r.Granted || r.Wait != "outside window all (opens 2026-12-08T03:00:00+01:00)" || !r.RetryAt.Equal(opens) {
		t.Errorf("lease outside the window = %+v, want a wait until %v", r, opens)
	}
	r = hs[3].lease(t, api.LeaseRequest{})
	if r.Granted || !r.Approval || !strings.Contains(r.Wait, "awaiting approval") {
		t.Errorf("emergency lease before approval = %+v, want awaiting approval", r)
	}
	st := e.reboots()
	for _, h := range st.Hosts {
		if h.Hostname == "wo-3" && !h.Approval {
			t.Errorf("reboot status of wo-3 = %+v, want awaiting approval", h)
		}
	}
	e.ok(e.admin.ApproveReboot(context.Background(), "wo-3", api.RebootApproval{Reason: "exploited in the wild"}))
	if r = hs[3].lease(t, api.LeaseRequest{}); !r.Granted {
		t.Errorf("approved emergency lease = %+v, want granted outside the window", r)
	}
	if n := e.auditCount("reboot.approve"); n != 1 {
		t.Errorf("audit has %d reboot.approve entries, want 1", n)
	}

	// The window opens a week later (the emergency lease expired long
	// ago): 50% of 4 hosts is 2.
	clock.Set(opens.Add(time.Minute))
	granted := 0
	for _, h := range hs[:3] {
		if h.lease(t, api.LeaseRequest{}).Granted {
			granted++
		}
	}
	if granted != 2 {
		t.Errorf("%d hosts got a lease when the window opened, want 2 (50%% of 4)", granted)
	}
	raw, _ := json.Marshal(st)
	t.Logf("reboot status before the window: %s", raw)

	// Metrics: hosts by reboot state, and the duration of a reboot the
	// host reports with its next check-in.
	c := api.Checkin{Hostname: "wo-3", KernelRelease: newKernel, BootID: "boot-2", Health: api.HealthOK, Kernel: &api.KernelCheckin{Running: newKernel, KnownGood: newKernel,
		LastBoot: &api.BootOutcome{From: kernel, To: newKernel, Booted: newKernel, Result: api.ResultOK, At: clock.Now(), Duration: api.Duration(95 * time.Second)}}}
	for range 2 { // the same outcome twice counts once
		if err := hs[3].cl.Do(context.Background(), http.MethodPost, api.PathSync, c, &api.SyncResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := e.srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "stent_server_reboot_hosts":
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			case "stent_server_reboot_duration_seconds":
				got["duration_count"], got["duration_sum"] = float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
			}
		}
	}
	if got["rebooting"] != 2 || got["waiting"] != 1 || got["duration_count"] != 1 || got["duration_sum"] != 95 {
		t.Errorf("reboot metrics = %v, want 2 rebooting, 1 waiting, one reboot of 95s", got)
	}
}
