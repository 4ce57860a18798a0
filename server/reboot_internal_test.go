package server

import (
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
)

// TestDecideLease is the reboot decision over window × budget × emergency
// × deadline × approval × label × rollout state, on a fixed clock.
func TestDecideLease(t *testing.T) {
	mk := func(when, maxU string, approval bool) *window {
		w, err := parseWindow(api.MaintenanceWindow{Name: "tue", When: when, MaxUnavailable: maxU, RequireApproval: approval})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// Tuesday 2026-12-01 04:00 Berlin is inside "Tue 03:00-05:00"; 06:00 is
	// outside and the next opening is Tuesday 2026-12-08 03:00 +01:00.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	inside := time.Date(2026, 12, 1, 4, 0, 0, 0, berlin)
	outside := time.Date(2026, 12, 1, 6, 0, 0, 0, berlin)
	nextOpen := time.Date(2026, 12, 8, 3, 0, 0, 0, berlin)
	win := mk("Tue 03:00-05:00 Europe/Berlin", "2", false)
	winPct := mk("Tue 03:00-05:00 Europe/Berlin", "20%", false)
	winApproval := mk("Tue 03:00-05:00 Europe/Berlin", "1", true)
	before := nextOpen.Add(-time.Hour)
	after := nextOpen.Add(time.Hour)
	base := func(now time.Time, w *window) leaseInput {
		return leaseInput{Now: now, Window: w, GroupSize: 10, RolloutID: "kr_1", RolloutState: api.RolloutRunning,
			HostState: api.KernelInstalled, Retry: time.Minute}
	}
	held := func(n int) []heldLease {
		var out []heldLease
		for i := range n {
			out = append(out, heldLease{Host: "h" + string(rune('a'+i)), ExpiresAt: inside.Add(time.Duration(10+i) * time.Minute)})
		}
		return out
	}
	tests := []struct {
		name     string
		in       func() leaseInput
		held     int
		grant    bool
		wait     string // substring
		retryAt  time.Time
		approval bool
	}{
		{"inside window, budget free", func() leaseInput { return base(inside, win) }, 1, true, "", time.Time{}, false},
		{"inside window, budget full", func() leaseInput { return base(inside, win) }, 2, false, "2 of 2 hosts of group tue rebooting (ha, hb)", inside.Add(time.Minute), false},
		{"budget full, a lease ends before the retry", func() leaseInput {
			in := base(inside, win)
			in.Retry = time.Hour
			return in
		}, 2, false, "2 of 2", inside.Add(10 * time.Minute), false},
		{"percentage of 10 is 2", func() leaseInput { return base(inside, winPct) }, 2, false, "2 of 2 hosts", inside.Add(time.Minute), false},
		{"percentage at least one", func() leaseInput {
			in := base(inside, winPct)
			in.GroupSize = 3
			return in
		}, 1, false, "1 of 1 hosts", inside.Add(time.Minute), false},
		{"outside window", func() leaseInput { return base(outside, win) }, 0, false, "outside window tue (opens 2026-12-08T03:00:00+01:00)", nextOpen, false},
		{"emergency, no deadline", func() leaseInput {
			in := base(outside, win)
			in.Emergency = true
			return in
		}, 0, true, "", time.Time{}, false},
		{"emergency, deadline before opening", func() leaseInput {
			in := base(outside, win)
			in.Emergency, in.Deadline = true, &before
			return in
		}, 0, true, "", time.Time{}, false},
		{"emergency, deadline after opening waits", func() leaseInput {
			in := base(outside, win)
			in.Emergency, in.Deadline = true, &after
			return in
		}, 0, false, "deadline", nextOpen, false},
		{"emergency still budgeted", func() leaseInput {
			in := base(outside, win)
			in.Emergency = true
			return in
		}, 2, false, "2 of 2", outside.Add(time.Minute), false},
		{"emergency needs approval", func() leaseInput {
			in := base(outside, winApproval)
			in.Emergency = true
			return in
		}, 0, false, "awaiting approval", outside.Add(time.Minute), true},
		{"emergency approved", func() leaseInput {
			in := base(outside, winApproval)
			in.Emergency, in.Approved = true, true
			return in
		}, 0, true, "", time.Time{}, false},
		{"approval not needed inside the window", func() leaseInput { return base(inside, winApproval) }, 0, true, "", time.Time{}, false},
		{"no-reboot label", func() leaseInput {
			in := base(inside, win)
			in.NoReboot = true
			return in
		}, 0, false, "host label stent.io/no-reboot", inside.Add(time.Minute), false},
		{"no-reboot label beats an emergency", func() leaseInput {
			in := base(outside, win)
			in.NoReboot, in.Emergency = true, true
			return in
		}, 0, false, "stent.io/no-reboot", outside.Add(time.Minute), false},
		{"rollout paused", func() leaseInput {
			in := base(inside, win)
			in.RolloutState = api.RolloutPaused
			return in
		}, 0, false, "kernel rollout kr_1 is paused", inside.Add(time.Minute), false},
		{"rollout halted", func() leaseInput {
			in := base(inside, win)
			in.RolloutState, in.Reasons = api.RolloutHalted, []string{api.RebootNewerKernel}
			return in
		}, 0, false, "is halted", inside.Add(time.Minute), false},
		{"not installed yet", func() leaseInput {
			in := base(inside, win)
			in.HostState = api.KernelInstalling
			return in
		}, 0, false, "the host is installing", inside.Add(time.Minute), false},
		{"reboot reason without a rollout", func() leaseInput {
			in := base(inside, win)
			in.RolloutID, in.Reasons = "", []string{api.RebootRequiredFile}
			return in
		}, 0, true, "", time.Time{}, false},
		{"no reason at all", func() leaseInput {
			in := base(inside, win)
			in.RolloutID = ""
			return in
		}, 0, false, "no reason to reboot", inside.Add(time.Minute), false},
		{"reason-only reboot is never an emergency", func() leaseInput {
			in := base(outside, win)
			in.RolloutID, in.Reasons, in.Emergency = "", []string{api.RebootRequiredFile}, true
			return in
		}, 0, false, "outside window", nextOpen, false},
		{"no window", func() leaseInput { return base(inside, nil) }, 0, false, "no maintenance window covers this host", inside.Add(time.Minute), false},
		{"no window, emergency, budget 1 free", func() leaseInput {
			in := base(inside, nil)
			in.Emergency = true
			return in
		}, 0, true, "", time.Time{}, false},
		{"no window, emergency, budget 1 taken", func() leaseInput {
			in := base(inside, nil)
			in.Emergency = true
			return in
		}, 1, false, "1 of 1 hosts without a window rebooting", inside.Add(time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideLease(tt.in(), held(tt.held))
			if d.Grant != tt.grant || !strings.Contains(d.Wait, tt.wait) || d.Approval != tt.approval {
				t.Fatalf("decideLease = %+v, want grant %v, wait containing %q, approval %v", d, tt.grant, tt.wait, tt.approval)
			}
			if !tt.grant && !d.RetryAt.Equal(tt.retryAt) {
				t.Errorf("decideLease retry at %v, want %v", d.RetryAt, tt.retryAt)
			}
		})
	}
}

// TestParseWindowBadInput: each bad field is named.
func TestParseWindowBadInput(t *testing.T) {
	ok := api.MaintenanceWindow{Name: "web", When: "Tue 03:00-05:00 Europe/Berlin", MaxUnavailable: "1"}
	tests := []struct {
		mod  func(*api.MaintenanceWindow)
		want string
	}{
		{func(w *api.MaintenanceWindow) { w.Name = "a b" }, "name"},
		{func(w *api.MaintenanceWindow) { w.When = "sometimes" }, "when"},
		{func(w *api.MaintenanceWindow) { w.When = "Tue 03:00-05:00 Mars/Olympus" }, "when"},
		{func(w *api.MaintenanceWindow) { w.MaxUnavailable = "0" }, "max_unavailable"},
		{func(w *api.MaintenanceWindow) { w.MaxUnavailable = "150%" }, "max_unavailable"},
		{func(w *api.MaintenanceWindow) { w.MaxUnavailable = "" }, "max_unavailable"},
		{func(w *api.MaintenanceWindow) { w.Selector = map[string]string{"role": "web server"} }, "selector"},
		{func(w *api.MaintenanceWindow) { w.LeaseTTL = api.Duration(time.Second) }, "lease_ttl"},
	}
	for _, tt := range tests {
		w := ok
		tt.mod(&w)
		_, err := parseWindow(w)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("parseWindow(%+v) = %v, want an error naming %s", w, err, tt.want)
		}
	}
	if w, err := parseWindow(ok); err != nil || time.Duration(w.LeaseTTL) != defaultLeaseTTL {
		t.Errorf("parseWindow(%+v) = %+v, %v; want the default lease TTL", ok, w, err)
	}
}
