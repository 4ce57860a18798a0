package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/patcher"
	"github.com/stent-dev/stent/store/storetest"
)

// TestRolloutCompletes runs a staged rollout over simulated hosts on both
// store engines: every host gets the patch once, the waves go in order.
func TestRolloutCompletes(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			e := startEnv(t, envOpt{engine: eng})
			f := e.fleet(40, "stable", func(c *fleetsim.Config) {
				c.Labels = func(i int) map[string]string {
					if i < 2 {
						return map[string]string{"canary": "true"}
					}
					return nil
				}
			})
			e.waitHosts(40)
			b := e.publish("lp_test_1", 1, true, 4096)
			r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 2, Waves: []int{25, 100}})
			if r.Counts.Target != 40 || r.State != api.RolloutRunning {
				t.Fatalf("new rollout = %+v, want 40 hosts running", r)
			}
			r = e.waitState(r.ID, api.RolloutCompleted, 90*time.Second)
			if r.Counts.Healthy != 40 || r.Counts.Failed != 0 {
				t.Errorf("completed rollout counts = %+v, want 40 healthy", r.Counts)
			}
			full := e.rollout(r.ID)
			for _, h := range full.Hosts {
				if h.Wave == 0 && h.Hostname != "sim-00000" && h.Hostname != "sim-00001" {
					t.Errorf("canary wave holds %s, want the canary-labelled hosts", h.Hostname)
				}
			}
			for _, h := range f.Hosts {
				if n := h.Runtime.Applies("lp_test_1"); n != 1 {
					t.Errorf("%s applied lp_test_1 %d times, want 1", h.Name, n)
				}
			}
			audit := e.audit(api.AuditQuery{Action: "host.apply", Limit: 1000})
			if len(audit) != 40 {
				t.Errorf("audit has %d host.apply entries, want 40", len(audit))
			}
			audit = e.audit(api.AuditQuery{Action: "rollout.wave"})
			if len(audit) != 2 {
				t.Errorf("audit has %d rollout.wave entries, want 2", len(audit))
			}
		})
	}
}

// TestRolloutHaltsOnFailures: failing hosts past the threshold halt the
// rollout; pause, resume and revert do what they say.
func TestRolloutHaltsPauseResumeRevert(t *testing.T) {
	e := startEnv(t, envOpt{})
	f := e.fleet(20, "stable", nil)
	for _, h := range f.Hosts[:] {
		h.Runtime.SetFail(func(string) error { return errors.New("simulated transition stall") })
	}
	e.waitHosts(20)
	b := e.publish("lp_bad", 1, true, 1024)
	r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 1})
	r = e.waitState(r.ID, api.RolloutHalted, 90*time.Second)
	if r.Wave != 0 || r.Counts.Failed != 1 {
		t.Errorf("halted rollout = wave %d counts %+v; want halted in the canary wave with 1 failure", r.Wave, r.Counts)
	}
	// Hosts beyond the canary were never told.
	for _, h := range f.Hosts {
		if h.Runtime.Loaded("lp_bad") {
			t.Errorf("%s has lp_bad loaded", h.Name)
		}
	}

	// A good patch, paused after the canary, resumed, then reverted. The
	// canaries load the patch and hold their reports until the pause is
	// in: however slow the machine, the pause lands after they applied
	// (a pause withdraws the patch from hosts that have not) and before
	// the canary wave is done.
	applying, paused := make(chan string, len(f.Hosts)), make(chan struct{})
	for _, h := range f.Hosts {
		h.Runtime.SetFail(nil)
		h.Runtime.SetAfterApply(func(ctx context.Context, name string) {
			applying <- name
			select {
			case <-paused:
			case <-ctx.Done():
			}
		})
	}
	good := e.publish("lp_good", 2, true, 1024)
	r = e.createRollout(api.RolloutRequest{Bundle: good.SHA256, Canary: 2, Waves: []int{50, 100}})
	timeout := time.After(90 * time.Second)
	for i := 0; i < 2; i++ {
		select {
		case <-applying:
		case <-timeout:
			t.Fatalf("%d of 2 canaries applied lp_good", i)
		}
	}
	r = e.rolloutAction(r.ID, "pause", api.RolloutActionRequest{Reason: "look first"})
	close(paused)
	if r.State != api.RolloutPaused {
		t.Fatalf("after pause: state %s", r.State)
	}
	// The canaries finish while paused; the next wave must not start.
	e.waitFor(90*time.Second, "the paused rollout's canaries healthy", func() bool {
		r = e.rollout(r.ID)
		return r.Counts.Healthy == 2
	})
	time.Sleep(500 * time.Millisecond)
	if r = e.rollout(r.ID); r.State != api.RolloutPaused || r.Wave != 0 || r.Counts.Applied != 2 {
		t.Errorf("paused rollout moved on: state %s wave %d, counts %+v", r.State, r.Wave, r.Counts)
	}
	r = e.rolloutAction(r.ID, "resume", api.RolloutActionRequest{})
	r = e.waitState(r.ID, api.RolloutCompleted, 90*time.Second)
	if r.Counts.Healthy != 20 {
		t.Errorf("completed counts %+v, want 20 healthy", r.Counts)
	}
	rs, err := e.admin.RevertPatch(context.Background(), api.RevertRequest{Name: "lp_good", Reason: "regression"})
	e.ok(err)
	if len(rs) != 1 {
		t.Fatalf("fleet revert touched %d rollouts, want 1", len(rs))
	}
	r = e.waitState(r.ID, api.RolloutReverted, 90*time.Second)
	for _, h := range f.Hosts {
		if h.Runtime.Loaded("lp_good") || h.Runtime.Reverts("lp_good") != 1 {
			t.Errorf("%s: lp_good loaded=%v reverts=%d, want unloaded once", h.Name, h.Runtime.Loaded("lp_good"), h.Runtime.Reverts("lp_good"))
		}
	}
	audit := e.audit(api.AuditQuery{Limit: 1000})
	seen := map[string]int{}
	for _, a := range audit {
		seen[a.Action]++
	}
	for _, want := range []string{"rollout.halt", "rollout.pause", "rollout.resume", "rollout.revert", "fleet.revert", "host.revert", "bundle.publish", "enroll_token.create", "host.enroll"} {
		if seen[want] == 0 {
			t.Errorf("audit log has no %s entry (has %v)", want, seen)
		}
	}
	_ = fmt.Sprint()
}

// TestAgentRuntimeRefusals: the runtime refusing because another live patch
// is in transition makes the agent wait and try again, not fail the host;
// a runtime refusal on its own (patcher.ErrRefused: bad signature, wrong
// kernel) is reported as refused, not failed.
func TestAgentRuntimeRefusals(t *testing.T) {
	e := startEnv(t, envOpt{})
	f := e.fleet(2, "stable", func(c *fleetsim.Config) {
		c.Labels = func(i int) map[string]string { return map[string]string{"n": fmt.Sprint(i)} }
	})
	busy, bad := f.Hosts[0].Runtime, f.Hosts[1].Runtime
	busy.SetPatch(api.PatchState{Name: "lp_other", Level: 1, Enabled: true, Transition: true})
	busy.SetFail(func(string) error {
		return fmt.Errorf("%w: live patch lp_other is still in transition", patcher.ErrRefused)
	})
	bad.SetFail(func(string) error {
		return fmt.Errorf("%w: bundle signed by an unknown key", patcher.ErrRefused)
	})
	e.waitHosts(2)
	b := e.publish("lp_wait", 1, false, 1024)

	r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Selector: map[string]string{"n": "0"}, Canary: 1})
	time.Sleep(1500 * time.Millisecond)
	if r = e.rollout(r.ID); r.State != api.RolloutRunning || r.Counts.Failed != 0 {
		t.Fatalf("rollout while another patch is in transition = %s, counts %+v; want running, nothing failed", r.State, r.Counts)
	}
	busy.SetFail(nil)
	busy.SetPatch(api.PatchState{Name: "lp_other", Level: 1, Enabled: true})
	r = e.waitState(r.ID, api.RolloutCompleted, 90*time.Second)
	if n := busy.Applies("lp_wait"); n != 1 {
		t.Errorf("lp_wait applied %d times after the transition ended, want 1", n)
	}

	r = e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Selector: map[string]string{"n": "1"}, Canary: 1})
	r = e.waitState(r.ID, api.RolloutHalted, 90*time.Second)
	full := e.rollout(r.ID)
	if len(full.Hosts) != 1 || full.Hosts[0].State != api.HostRefused {
		t.Errorf("rollout hosts = %+v, want the one host refused", full.Hosts)
	}
}
