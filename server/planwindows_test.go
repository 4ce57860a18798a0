package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

// rebootAction is host id's "reboot in window" action, or nil.
func rebootAction(h api.PlanHost) *policy.Action {
	if h.Plan == nil {
		return nil
	}
	for i, a := range h.Plan.Actions {
		if a.Kind == policy.ActReboot {
			return &h.Plan.Actions[i]
		}
	}
	return nil
}

// The server's maintenance windows feed the live plan: a host that a
// window set with "stent fleet windows" covers is planned with that
// window (its next opening in the reboot action), not the policy file's;
// changing the window re-plans at once and the plan names the new time; a
// host no server window covers keeps the policy file's window; deleting
// the server's window gives the policy file's back.
func TestPlanWindowsFromServer(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	// Nothing urgent: every fix waits for a window.
	_, err := e.admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "rules": [{"id": "urgent", "disabled": true}],
		"windows": [{"name": "policy-sat", "when": "Sat 01:00-02:00 UTC"}]}`})
	e.ok(err)
	webTok, err := e.admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "web", Channel: "stable", Labels: map[string]string{"role": "web"}})
	e.ok(err)
	web, err := e.enroll(webTok.Secret, "win-web")
	e.ok(err)
	creds, _ := e.manualHosts("win", 1)
	other := creds[0]
	e.sendInventoryOn(web, web2Release, fleetInventory(t, "web2", "win-web"))
	e.sendInventoryOn(other, web2Release, fleetInventory(t, "web2", "win-0"))

	slotOf := func(what string, id string, ok func(*policy.Slot) bool) *policy.Slot {
		t.Helper()
		var got *policy.Slot
		_, hs := e.waitPlan(what, func(_ *api.PlanPage, hs map[string]api.PlanHost) bool {
			a := rebootAction(hs[id])
			if a == nil {
				return false
			}
			got = a.Window
			return ok(got)
		})
		if a := rebootAction(hs[id]); !strings.Contains(a.Summary, "in window "+got.Window) {
			t.Errorf("%s: reboot summary %q does not name window %s", what, a.Summary, got.Window)
		}
		return got
	}
	named := func(name string, start time.Time) func(*policy.Slot) bool {
		return func(s *policy.Slot) bool { return s != nil && s.Window == name && s.Start.Equal(start) }
	}
	// Monday 2026-11-23 06:00 UTC: the policy's window opens Saturday.
	sat := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	slotOf("both hosts in the policy's window", web.HostID, named("policy-sat", sat))
	slotOf("both hosts in the policy's window", other.HostID, named("policy-sat", sat))

	// The server's window for role=web: the web host's plan names it.
	e.putWindow(api.MaintenanceWindow{Name: "web-tue", When: "Tue 03:00-05:00 Europe/Berlin", Selector: map[string]string{"role": "web"}, MaxUnavailable: "1"})
	tue := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	slotOf("the web host in the server's window", web.HostID, named("web-tue", tue))
	slotOf("the other host still in the policy's window", other.HostID, named("policy-sat", sat))
	rs, err := e.admin.SearchReboots(ctx, api.RebootQuery{Host: web.HostID})
	e.ok(err)
	if len(rs.Hosts) != 1 || rs.Hosts[0].Window != "web-tue" {
		t.Errorf("the reboot scheduler's window of the web host = %+v, want web-tue, as the plan says", rs.Hosts)
	}

	// Changing the window re-plans: the plan names the new opening.
	e.putWindow(api.MaintenanceWindow{Name: "web-tue", When: "Wed 22:00-23:00 UTC", Selector: map[string]string{"role": "web"}, MaxUnavailable: "1"})
	slotOf("the web host re-planned with the changed window", web.HostID, named("web-tue", time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)))

	// Deleting it gives the policy's window back.
	e.ok(e.admin.DeleteWindow(ctx, "web-tue"))
	slotOf("the web host back in the policy's window", web.HostID, named("policy-sat", sat))
	if p, _ := e.planHosts(api.PlanQuery{}); !slices.ContainsFunc(p.Policy.Windows, func(w policy.Window) bool { return w.Name == "policy-sat" }) || len(p.Policy.Windows) != 1 {
		t.Errorf("the plan's policy windows = %+v, want the policy file's as uploaded", p.Policy.Windows)
	}
}

// Setting a host's labels re-plans it at once, without a new inventory:
// relabelled role=web, the host is in the web window of the server at
// once (its plan evaluated after the change), and back in the policy's
// when the label goes. The change is audited; a viewer, a bad label and
// an unknown host change nothing.
func TestPlanHostLabels(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	_, err := e.admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "rules": [{"id": "urgent", "disabled": true}],
		"windows": [{"name": "policy-sat", "when": "Sat 01:00-02:00 UTC"}]}`})
	e.ok(err)
	e.putWindow(api.MaintenanceWindow{Name: "web-tue", When: "Tue 03:00-05:00 Europe/Berlin", Selector: map[string]string{"role": "web"}, MaxUnavailable: "1"})
	creds, _ := e.manualHosts("lbl", 2)
	h := creds[0]
	e.sendInventoryOn(h, web2Release, fleetInventory(t, "web2", "lbl-0"))
	e.sendInventoryOn(creds[1], web2Release, fleetInventory(t, "web2", "lbl-1"))
	sat := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	tue := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	in := func(name string, start time.Time) func(*api.PlanPage, map[string]api.PlanHost) bool {
		return func(_ *api.PlanPage, hs map[string]api.PlanHost) bool {
			a := rebootAction(hs[h.HostID])
			return a != nil && a.Window != nil && a.Window.Window == name && a.Window.Start.Equal(start)
		}
	}
	e.waitPlan("the host in the policy's window", in("policy-sat", sat))

	// Bad input changes nothing.
	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "v", Role: api.RoleViewer})
	e.ok(err)
	viewer := e.client(tv.Secret)
	if _, err := viewer.SetHostLabels(ctx, h.HostID, api.HostLabelsRequest{Labels: map[string]string{"role": "web"}}); !api.IsStatus(err, 403) {
		t.Errorf("a viewer's SetHostLabels = %v, want 403", err)
	}
	if _, err := e.admin.SetHostLabels(ctx, h.HostID, api.HostLabelsRequest{Labels: map[string]string{"role": "w b"}}); !api.IsStatus(err, 400) || !strings.Contains(err.Error(), "role=w b") {
		t.Errorf("SetHostLabels(role=w b) = %v, want 400 naming the label", err)
	}
	if _, err := e.admin.SetHostLabels(ctx, "h_nosuch", api.HostLabelsRequest{Labels: map[string]string{"role": "web"}}); !api.IsStatus(err, 404) {
		t.Errorf("SetHostLabels(h_nosuch) = %v, want 404", err)
	}
	if got, _ := e.admin.Host(ctx, h.HostID); len(got.Labels) != 0 {
		t.Fatalf("labels after refused changes = %v, want none", got.Labels)
	}

	// role=web: the server's web window, at once.
	t0 := time.Now()
	got, err := e.admin.SetHostLabels(ctx, h.HostID, api.HostLabelsRequest{Labels: map[string]string{"role": "web"}, Reason: "moved to the web tier"})
	e.ok(err)
	if got.Labels["role"] != "web" {
		t.Errorf("SetHostLabels answered labels %v, want role=web", got.Labels)
	}
	_, hs := e.waitPlan("the relabelled host in the server's web window", in("web-tue", tue))
	took := time.Since(t0)
	if !hs[h.HostID].EvaluatedAt.After(t0) {
		t.Errorf("the host's plan was evaluated at %v, before the label change at %v", hs[h.HostID].EvaluatedAt, t0)
	}
	if a := rebootAction(hs[creds[1].HostID]); a == nil || a.Window == nil || a.Window.Window != "policy-sat" {
		t.Errorf("the other host's reboot = %+v, want the policy's window still", a)
	}
	if took > 15*time.Second { // the periodic re-plan is 5 minutes away
		t.Errorf("the label change was in the plan after %v, want at once", took)
	}
	t.Logf("relabelled host re-planned %v after the change", took.Round(time.Millisecond))
	if p, err := e.admin.Plan(ctx, api.PlanQuery{Selector: map[string]string{"role": "web"}}); err != nil || p.Hosts != 1 || p.Page[0].HostID != h.HostID {
		t.Errorf("Plan(role=web) = %+v, %v; want the relabelled host", p, err)
	}
	rs, err := e.admin.SearchReboots(ctx, api.RebootQuery{Host: h.HostID})
	e.ok(err)
	if len(rs.Hosts) != 1 || rs.Hosts[0].Window != "web-tue" {
		t.Errorf("the reboot scheduler's window of the relabelled host = %+v, want web-tue", rs.Hosts)
	}
	audit, err := e.admin.Audit(ctx, api.AuditQuery{Target: h.HostID, Action: "host.labels"})
	e.ok(err)
	if len(audit) != 1 || !strings.Contains(string(audit[0].Detail), "moved to the web tier") {
		t.Errorf("host.labels audit entries = %+v, want one with the reason", audit)
	}

	// No label: the policy's window again.
	_, err = e.admin.SetHostLabels(ctx, h.HostID, api.HostLabelsRequest{})
	e.ok(err)
	e.waitPlan("the host back in the policy's window", in("policy-sat", sat))
}

// A host enrolled again (--replace) leaves the live plan with its old
// enrollment, as a revoked host does: the actions of its plan lose it at
// once, not at the next change of its group.
func TestPlanReplacedHostLeaves(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	_, err := e.admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "rules": [{"id": "urgent", "disabled": true}],
		"windows": [{"name": "policy-sat", "when": "Sat 01:00-02:00 UTC"}]}`})
	e.ok(err)
	creds, _ := e.manualHosts("rep", 2)
	e.sendInventoryOn(creds[0], web2Release, fleetInventory(t, "web2", "rep-0"))
	e.sendInventoryOn(creds[1], web2Release, fleetInventory(t, "web2", "rep-1"))
	e.waitAction("a reboot for both hosts", policy.ActReboot, func(a api.PlanAction) bool { return a.HostCount == 2 })
	_, err = e.enrollReq(api.EnrollRequest{Token: e.enrollToken("stable", 0), Hostname: "rep-1", Replaces: creds[1].Credential})
	e.ok(err)
	e.waitAction("the reboot without the replaced enrollment", policy.ActReboot, func(a api.PlanAction) bool {
		return a.HostCount == 1 && a.Hosts[0] == creds[0].HostID
	})
}
