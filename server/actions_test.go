package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

var actionFeeds = []string{
	"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
	"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
	"osv=" + filepath.Join(vulnData, "osv"),
	"nvd=" + filepath.Join(vulnData, "nvd"),
}

// web2Release is the kernel web2's inventory runs.
const web2Release = "6.1.0-54-amd64"

// sendInventoryOn checks a host in on release with an inventory.
func (e *env) sendInventoryOn(c *agent.Credentials, release string, inv []byte) {
	e.t.Helper()
	e.ok(e.sync(c.Credential, api.Checkin{KernelRelease: release, Health: api.HealthOK, Inventory: inv}))
}

// waitAction polls the actions until one of kind satisfies ok.
func (e *env) waitAction(what, kind string, ok func(api.PlanAction) bool) api.PlanAction {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := e.admin.Actions(context.Background(), true)
		e.ok(err)
		for _, a := range l.Actions {
			if a.Kind == kind && ok(a) {
				return a
			}
		}
		if time.Now().After(deadline) {
			var all []string
			for _, a := range l.Actions {
				all = append(all, brief(a))
			}
			e.t.Fatalf("actions: %s: not after 30s: %v", what, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rolloutsOf lists the rollouts of the live patch name.
func (e *env) rolloutsOf(name string) []api.Rollout {
	e.t.Helper()
	rs, err := e.admin.Rollouts(context.Background())
	e.ok(err)
	var out []api.Rollout
	for _, r := range rs {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// replanned makes the server plan every group again (a window change) and
// waits until host id's plan is newer.
func (e *env) replanned(id string) {
	e.t.Helper()
	before, _ := e.admin.Plan(context.Background(), api.PlanQuery{Host: id})
	e.putWindow(api.MaintenanceWindow{Name: "replan", When: "Sun 03:00-04:00 UTC", MaxUnavailable: "1"})
	e.waitPlan("host re-planned", func(_ *api.PlanPage, hs map[string]api.PlanHost) bool {
		return hs[id].EvaluatedAt.After(before.Page[0].EvaluatedAt)
	})
	e.ok(e.admin.DeleteWindow(context.Background(), "replan"))
}

// With "apply-livepatch" unattended, a bundle published for web2's kernel
// starts exactly one rollout, to exactly the two web2 hosts (not db1's);
// evaluating again starts nothing more; a third web2 host gets a rollout
// of its own; a host whose inventory shows the patch applied leaves the
// action.
func TestPlanActionUnattended(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	_, err := e.admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "unattended": ["apply-livepatch"]}`})
	e.ok(err)
	creds, _ := e.manualHosts("ua", 4)
	e.sendInventoryOn(creds[0], web2Release, fleetInventory(t, "web2", "ua-0"))
	e.sendInventoryOn(creds[1], web2Release, fleetInventory(t, "web2", "ua-1"))
	e.sendInventoryOn(creds[2], kernel, fleetInventory(t, "db1", "ua-2"))
	e.waitPlan("3 hosts planned", func(p *api.PlanPage, _ map[string]api.PlanHost) bool {
		return p.Hosts == 3 && p.Failed == 0 && p.PolicyVersion == 1
	})

	info := publishFor(t, e, "lp_web2", web2Release, "6.1.190-1", "CVE-2026-99228")
	a := e.waitAction("the live patch started", policy.ActApplyLivePatch, func(a api.PlanAction) bool { return a.State == api.ActionStarted })
	want := []string{creds[0].HostID, creds[1].HostID}
	slices.Sort(want)
	if !a.Unattended || a.Target != "lp_web2" || !slices.Equal(a.Hosts, want) || !slices.Equal(a.Started, want) || len(a.Refs) != 1 {
		t.Fatalf("action = %+v, want lp_web2 started unattended for %v with one rollout", a, want)
	}
	rs := e.rolloutsOf("lp_web2")
	if len(rs) != 1 || rs[0].ID != a.Refs[0] || rs[0].Bundle != info.SHA256 || rs[0].Counts.Target != 2 || !slices.Equal(rs[0].OnlyHosts, want) {
		t.Fatalf("rollouts of lp_web2 = %+v, want one, %s, to the 2 web2 hosts", rs, a.Refs[0])
	}
	full, err := e.admin.Rollout(ctx, rs[0].ID, true)
	e.ok(err)
	for _, rh := range full.Hosts {
		if !slices.Contains(want, rh.HostID) {
			t.Errorf("rollout %s has host %s, which does not need lp_web2", rs[0].ID, rh.HostID)
		}
	}

	// Evaluated again: nothing starts twice.
	e.replanned(creds[0].HostID)
	if rs := e.rolloutsOf("lp_web2"); len(rs) != 1 {
		t.Fatalf("after another evaluation: %d rollouts of lp_web2, want 1", len(rs))
	}

	// A third host in the same situation: a rollout for it alone.
	e.sendInventoryOn(creds[3], web2Release, fleetInventory(t, "web2", "ua-3"))
	a = e.waitAction("extended to ua-3", policy.ActApplyLivePatch, func(a api.PlanAction) bool { return len(a.Started) == 3 })
	rs = e.rolloutsOf("lp_web2")
	if len(a.Refs) != 2 || len(rs) != 2 || !slices.Equal(rs[1].OnlyHosts, []string{creds[3].HostID}) || rs[1].Counts.Target != 1 {
		t.Errorf("after ua-3 came: action refs %v, rollouts %+v; want a second rollout to ua-3 alone", a.Refs, rs)
	}
	if n := e.auditCount("plan.action.start"); n != 2 {
		t.Errorf("%d plan.action.start audit entries, want 2", n)
	}

	// ua-0's next inventory shows the patch applied: it leaves the action.
	applied := bytes.Replace(fleetInventory(t, "web2", "ua-0"), []byte(`"live_patches": [],`),
		[]byte(`"live_patches": [{"name": "lp_web2", "enabled": true, "cves": ["CVE-2026-99228"], "manifest": true}],`), 1)
	e.sendInventoryOn(creds[0], web2Release, applied)
	a = e.waitAction("ua-0 done", policy.ActApplyLivePatch, func(a api.PlanAction) bool { return a.HostCount == 2 && !slices.Contains(a.Hosts, creds[0].HostID) })
	if len(e.rolloutsOf("lp_web2")) != 2 {
		t.Errorf("a host leaving the action started a rollout")
	}
}

// Without unattended kinds, the same action waits: no rollout until an
// operator approves it (a viewer may not); then one, audited.
func TestPlanActionApproval(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	creds, _ := e.manualHosts("ap", 2)
	e.sendInventoryOn(creds[0], web2Release, fleetInventory(t, "web2", "ap-0"))
	e.sendInventoryOn(creds[1], web2Release, fleetInventory(t, "web2", "ap-1"))
	e.waitPlan("2 hosts planned", func(p *api.PlanPage, _ map[string]api.PlanHost) bool { return p.Hosts == 2 && p.Failed == 0 })
	publishFor(t, e, "lp_web2", web2Release, "6.1.190-1", "CVE-2026-99228")
	a := e.waitAction("the live patch proposed", policy.ActApplyLivePatch, func(a api.PlanAction) bool { return a.HostCount == 2 })
	e.replanned(creds[0].HostID)
	l, err := e.admin.Actions(ctx, false)
	e.ok(err)
	for _, x := range l.Actions {
		if x.ID == a.ID && (x.State != api.ActionProposed || len(x.Refs) != 0) {
			t.Fatalf("action before approval = %+v, want proposed and nothing started", x)
		}
	}
	if rs := e.rolloutsOf("lp_web2"); len(rs) != 0 {
		t.Fatalf("%d rollouts before the approval, want none", len(rs))
	}

	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "v", Role: api.RoleViewer})
	e.ok(err)
	if _, err := e.client(tv.Secret).ApproveAction(ctx, a.ID, api.ActionApproval{}); !api.IsStatus(err, http.StatusForbidden) {
		t.Errorf("viewer ApproveAction = %v, want 403", err)
	}
	if _, err := e.admin.ApproveAction(ctx, "act_nosuch", api.ActionApproval{}); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("ApproveAction(act_nosuch) = %v, want 404", err)
	}
	got, err := e.admin.ApproveAction(ctx, a.ID, api.ActionApproval{Reason: "change 4711"})
	e.ok(err)
	if got.State != api.ActionStarted || got.ApprovedBy == "" || len(got.Refs) != 1 || len(got.Started) != 2 {
		t.Fatalf("approved action = %+v, want started for 2 hosts with one rollout", got)
	}
	if _, err := e.admin.ApproveAction(ctx, a.ID, api.ActionApproval{}); !api.IsStatus(err, http.StatusConflict) {
		t.Errorf("a second approval = %v, want 409", err)
	}
	if rs := e.rolloutsOf("lp_web2"); len(rs) != 1 || rs[0].Counts.Target != 2 {
		t.Errorf("rollouts after the approval = %+v, want one to 2 hosts", rs)
	}
	if e.auditCount("plan.action.approve") != 1 || e.auditCount("plan.action.start") != 1 {
		t.Errorf("audit: %d approvals, %d starts; want 1 and 1", e.auditCount("plan.action.approve"), e.auditCount("plan.action.start"))
	}
	// After a restart the action is still started: nothing starts again.
	e.restart(0)
	e.waitPlan("planned after the restart", func(p *api.PlanPage, _ map[string]api.PlanHost) bool { return p.Hosts == 2 && p.Failed == 0 })
	e.replanned(creds[0].HostID)
	if rs := e.rolloutsOf("lp_web2"); len(rs) != 1 {
		t.Errorf("after a restart: %d rollouts, want 1", len(rs))
	}
}

// An emergency reboot into an installed fixed kernel waits for approval,
// then becomes a kernel rollout (emergency, with the plan's deadline) of
// the reboot scheduler to exactly that host.
func TestPlanActionReboot(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	creds, _ := e.manualHosts("rb", 2)
	// web2 with the fixed kernel of db1 installed, not booted.
	inv := map[string]any{}
	e.ok(json.Unmarshal(fleetInventory(t, "web2", "rb-0"), &inv))
	pkgs := inv["kernel_packages"].([]any)
	inv["kernel_packages"] = append(pkgs, map[string]any{"name": "linux-image-6.1.0-56-amd64", "version": "6.1.192-2", "arch": "amd64", "kernel_release": kernel})
	inv["kernel_metapackages"] = []any{map[string]any{"name": "linux-image-amd64", "version": "6.1.192-2", "arch": "amd64"}}
	inv["newest_kernel"] = kernel
	b, err := json.Marshal(inv)
	e.ok(err)
	e.sendInventoryOn(creds[0], web2Release, b)
	e.sendInventoryOn(creds[1], kernel, fleetInventory(t, "db1", "rb-1"))
	a := e.waitAction("the emergency reboot proposed", policy.ActEmergencyReboot, func(a api.PlanAction) bool { return a.HostCount == 1 })
	if a.State != api.ActionProposed || a.Target != kernel || a.Hosts[0] != creds[0].HostID || a.Error != "" {
		t.Fatalf("action = %+v, want a proposed emergency reboot of rb-0 into %s", a, kernel)
	}
	if krs, _ := e.admin.KernelRollouts(ctx); len(krs) != 0 {
		t.Fatalf("%d kernel rollouts before the approval, want none", len(krs))
	}
	got, err := e.admin.ApproveAction(ctx, a.ID, api.ActionApproval{})
	e.ok(err)
	if got.State != api.ActionStarted || len(got.Refs) != 1 {
		t.Fatalf("approved = %+v, want started with one kernel rollout", got)
	}
	kr := e.kernelRollout(got.Refs[0])
	if kr.Release != kernel || !kr.Emergency || kr.Deadline == nil || len(kr.Targets) != 1 || kr.Targets[0].HostID != creds[0].HostID {
		t.Errorf("kernel rollout = %+v, want an emergency one into %s for rb-0 alone, with a deadline", kr, kernel)
	}
}

// A host whose fixed kernel is not installed yet (web2: an urgent CVE past
// its deadline, no live patch; the plan upgrades linux-image-amd64, then
// reboots at once) gets one emergency-reboot action that installs the
// fixed build first: its release and version are what another host of the
// fleet (db1) reports. Approved, it is one emergency kernel rollout of
// exactly the hosts no kernel rollout of that release takes already (an
// operator's takes one of them: never twice); a host whose inventory
// shows the new kernel running leaves the action. Without a host that
// knows the fixed build, the action says why it cannot start.
func TestPlanActionUpgradeKernel(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: actionFeeds})
	ctx := context.Background()
	creds, _ := e.manualHosts("up", 4)
	e.sendInventoryOn(creds[0], web2Release, fleetInventory(t, "web2", "up-0"))
	e.sendInventoryOn(creds[1], web2Release, fleetInventory(t, "web2", "up-1"))
	e.sendInventoryOn(creds[2], web2Release, fleetInventory(t, "web2", "up-2"))
	a := e.waitAction("the emergency reboot proposed, unresolved", policy.ActEmergencyReboot, func(a api.PlanAction) bool { return a.HostCount == 3 })
	if a.State != api.ActionProposed || !strings.Contains(a.Error, "no host of the fleet reports") || a.Version != "" {
		t.Fatalf("action without a host that knows the fix = %s, want proposed, saying why it cannot start", brief(a))
	}
	if _, err := e.admin.ApproveAction(ctx, a.ID, api.ActionApproval{}); err != nil {
		t.Fatal(err)
	}
	if krs, _ := e.admin.KernelRollouts(ctx); len(krs) != 0 {
		t.Fatalf("an unresolved approved action started %d kernel rollouts", len(krs))
	}

	// db1 runs the fixed build 6.1.0-56-amd64 (6.1.192-2).
	e.sendInventoryOn(creds[3], kernel, fleetInventory(t, "db1", "up-3"))
	a = e.waitAction("the emergency reboot resolved", policy.ActEmergencyReboot, func(a api.PlanAction) bool { return a.Target == kernel && a.State == api.ActionProposed })
	if a.Version != "6.1.192-2" || !slices.Equal(a.Packages, []string{"linux-image-" + kernel, "linux-image-amd64"}) || a.Error != "" || a.HostCount != 3 || !strings.HasPrefix(a.Summary, "install linux-image-amd64 6.1.192-2") {
		t.Fatalf("resolved action = %s, want %s 6.1.192-2 with the image and metapackage, for the 3 web2 hosts", brief(a), kernel)
	}
	// An operator's kernel rollout of that release takes up-0 already.
	mine, err := e.admin.CreateKernelRollout(ctx, api.KernelRolloutRequest{Release: kernel, Version: "6.1.192-2", Hosts: []string{creds[0].HostID}})
	e.ok(err)
	got, err := e.admin.ApproveAction(ctx, a.ID, api.ActionApproval{Reason: "exploited"})
	e.ok(err)
	if got.State != api.ActionStarted || len(got.Started) != 3 || len(got.Refs) != 2 || !slices.Contains(got.Refs, mine.ID) {
		t.Fatalf("approved = %s, want started for 3 hosts with the operator's rollout and one new one", brief(*got))
	}
	var kr api.KernelRollout
	for _, id := range got.Refs {
		if id != mine.ID {
			kr = e.kernelRollout(id)
		}
	}
	want := []string{creds[1].HostID, creds[2].HostID}
	slices.Sort(want)
	var targets []string
	for _, h := range kr.Targets {
		targets = append(targets, h.HostID)
	}
	if kr.Release != kernel || kr.Version != "6.1.192-2" || !slices.Equal(kr.Packages, a.Packages) || !kr.Emergency || kr.Deadline == nil || !slices.Equal(targets, want) {
		t.Errorf("kernel rollout = %+v, want an emergency install of %s 6.1.192-2 for up-1 and up-2 alone, with a deadline", kr, kernel)
	}
	e.replanned(creds[1].HostID)
	if krs, _ := e.admin.KernelRollouts(ctx); len(krs) != 2 {
		t.Errorf("after another evaluation: %d kernel rollouts, want 2", len(krs))
	}

	// up-1 now runs the fixed kernel: it leaves the action.
	done := bytes.ReplaceAll(fleetInventory(t, "db1", "up-1"), []byte(`"hostname": "db1"`), []byte(`"hostname": "up-1"`))
	e.sendInventoryOn(creds[1], kernel, done)
	e.waitAction("up-1 left", policy.ActEmergencyReboot, func(a api.PlanAction) bool {
		return a.ID == got.ID && a.HostCount == 2 && !slices.Contains(a.Hosts, creds[1].HostID)
	})
	if krs, _ := e.admin.KernelRollouts(ctx); len(krs) != 2 {
		t.Errorf("a host leaving the action started a kernel rollout (%d)", len(krs))
	}
}

// brief is an action without its CVEs, for failure messages.
func brief(a api.PlanAction) string {
	a.CVEs = nil
	return fmt.Sprintf("%+v", a)
}
