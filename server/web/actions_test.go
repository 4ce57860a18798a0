package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

// planNow is the server's clock in the tests of the live plan's actions
// (the testdata feeds' deadlines are relative to it).
var planNow = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

var planFeeds = []string{
	"debian-changelog=" + filepath.Join("..", "..", "vuln", "testdata", "linux-image-6.1.0-56-amd64.changelog.gz"),
	"cna=" + filepath.Join("..", "..", "vuln", "testdata", "kernel-cna-sample.tar.gz"),
	"osv=" + filepath.Join("..", "..", "vuln", "testdata", "osv"),
	"nvd=" + filepath.Join("..", "..", "vuln", "testdata", "nvd"),
}

// emergencyInventory is policy/testdata/fleet/web2.json (kernel
// 6.1.0-54, exposed to an urgent CVE past its deadline, no live patch)
// with the fixed kernel 6.1.0-56 installed, not booted: its plan is an
// emergency reboot into it.
func emergencyInventory(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "policy", "testdata", "fleet", "web2.json"))
	if err != nil {
		t.Fatal(err)
	}
	inv := map[string]any{}
	if err := json.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	inv["kernel_packages"] = append(inv["kernel_packages"].([]any), map[string]any{"name": "linux-image-" + kernel, "version": "6.1.192-2", "arch": "amd64", "kernel_release": kernel})
	inv["kernel_metapackages"] = []any{map[string]any{"name": "linux-image-amd64", "version": "6.1.192-2", "arch": "amd64"}}
	inv["newest_kernel"] = kernel
	out, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// form posts path with the CSRF token and answers the status and
// Location.
func form(t *testing.T, c *http.Client, base, path, csrf string) (int, string, string) {
	t.Helper()
	resp, body := post(t, c, base, path, url.Values{"csrf": {csrf}}, nil)
	return resp.StatusCode, resp.Header.Get("Location"), body
}

func (e *env) auditCount(action string) int {
	e.t.Helper()
	es, err := e.admin.Audit(context.Background(), api.AuditQuery{Action: action, Limit: 1000})
	e.ok(err)
	return len(es)
}

// TestDashboardActionButtons drives the operator's buttons against a real
// server with feeds and simulated hosts whose inventories plan an
// emergency reboot: the actions page lists the proposed action by group
// with an Approve button; a viewer sees no button and the API refuses the
// viewer's post; the operator's approval (CSRF-checked) starts an
// emergency kernel rollout for exactly those hosts, audited; the kernel
// rollouts page pauses and resumes it; the reboots page approves a host's
// emergency reboot outside its window.
func TestDashboardActionButtons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server with feeds and 3 simulated hosts")
	}
	inv := emergencyInventory(t)
	e := startEnvWith(t, 3, 0, envOpt{now: func() time.Time { return planNow }, feeds: planFeeds, kernel: "6.1.0-54-amd64",
		inventory: func(i int) json.RawMessage {
			if i == 2 {
				return nil // no inventory: not in the plan, in no action
			}
			return inv
		}})
	ctx := context.Background()
	var a api.PlanAction
	e.waitFor(60*time.Second, "the emergency reboot proposed for 2 hosts", func() bool {
		l, err := e.admin.Actions(ctx, false)
		e.ok(err)
		for _, x := range l.Actions {
			if x.Kind == policy.ActEmergencyReboot && x.HostCount == 2 {
				a = x
				return true
			}
		}
		return false
	})
	if a.State != api.ActionProposed || a.Target != kernel {
		t.Fatalf("action = %+v, want a proposed emergency reboot into %s", a, kernel)
	}

	op, viewer := e.browser(), e.browser()
	csrf := login(t, op, e.url, e.admin.Token)
	vcsrf := login(t, viewer, e.url, e.token("watcher", api.RoleViewer))

	// The page lists it under its group, with the button for operators.
	_, _, page := get(t, op, e.url, "/ui/actions")
	for _, want := range []string{`id="group-` + a.Group + `"`, `id="action-` + a.ID + `" data-state="proposed"`, `id="approve-` + a.ID + `"`, `data-n="1"`} {
		if !strings.Contains(page, want) {
			t.Errorf("operator's actions page lacks %s:\n%s", want, page)
		}
	}
	_, _, page = get(t, viewer, e.url, "/ui/actions")
	if strings.Contains(page, `id="approve-`) || !strings.Contains(page, `id="readonly"`) || !strings.Contains(page, `id="action-`+a.ID+`"`) {
		t.Errorf("viewer's actions page: want the action listed without an Approve button:\n%s", page)
	}

	// A viewer's post is refused by the API; a post without CSRF by the page.
	path := "/ui/actions/" + a.ID + "/approve"
	if st, _, body := form(t, viewer, e.url, path, vcsrf); st != http.StatusForbidden || !strings.Contains(body, "has role viewer") {
		t.Errorf("viewer's approval = %d, want 403 from the API:\n%s", st, body)
	}
	if st, _, _ := form(t, op, e.url, path, ""); st != http.StatusForbidden {
		t.Errorf("approval without the CSRF token = %d, want 403", st)
	}
	if krs, _ := e.admin.KernelRollouts(ctx); len(krs) != 0 || e.auditCount("plan.action.approve") != 0 {
		t.Fatalf("refused approvals changed something: %d kernel rollouts, %d approvals", len(krs), e.auditCount("plan.action.approve"))
	}

	// The operator's approval starts it.
	if st, loc, body := form(t, op, e.url, path, csrf); st != http.StatusSeeOther || loc != "/ui/actions" {
		t.Fatalf("approval = %d to %q, want 303 back to /ui/actions:\n%s", st, loc, body)
	}
	_, _, page = get(t, op, e.url, "/ui/actions")
	if !strings.Contains(page, "Approved "+policy.ActEmergencyReboot) || !strings.Contains(page, `id="action-`+a.ID+`" data-state="started"`) {
		t.Errorf("actions page after the approval: want the flash and the action started:\n%s", page)
	}
	l, err := e.admin.Actions(ctx, false)
	e.ok(err)
	var got api.PlanAction
	for _, x := range l.Actions {
		if x.ID == a.ID {
			got = x
		}
	}
	if got.State != api.ActionStarted || len(got.Refs) != 1 || !strings.Contains(got.ApprovedBy, "bootstrap") {
		t.Fatalf("action after the approval = %+v, want started by the bootstrap token's approval with one kernel rollout", got)
	}
	kr, err := e.admin.KernelRollout(ctx, got.Refs[0])
	e.ok(err)
	if !kr.Emergency || kr.State != api.RolloutRunning || len(kr.Targets) != 2 {
		t.Fatalf("kernel rollout = %+v, want an emergency one for the 2 hosts", kr)
	}
	if n := e.auditCount("plan.action.approve"); n != 1 {
		t.Errorf("%d plan.action.approve audit entries, want 1", n)
	}

	// Kernel rollouts: pause and resume, the viewer refused.
	_, _, page = get(t, viewer, e.url, "/ui/kernel-rollouts")
	if strings.Contains(page, `id="kr-pause-`) {
		t.Errorf("viewer's kernel rollouts page shows a pause button")
	}
	_, _, page = get(t, op, e.url, "/ui/kernel-rollouts")
	if !strings.Contains(page, `id="kr-pause-`+kr.ID+`"`) {
		t.Errorf("operator's kernel rollouts page lacks the pause button of %s:\n%s", kr.ID, page)
	}
	if st, _, _ := form(t, viewer, e.url, "/ui/kernel-rollouts/"+kr.ID+"/pause", vcsrf); st != http.StatusForbidden {
		t.Errorf("viewer's pause = %d, want 403", st)
	}
	if st, _, _ := form(t, op, e.url, "/ui/kernel-rollouts/"+kr.ID+"/pause", csrf); st != http.StatusSeeOther {
		t.Errorf("pause = %d, want 303", st)
	}
	if k, _ := e.admin.KernelRollout(ctx, kr.ID); k.State != api.RolloutPaused {
		t.Errorf("kernel rollout is %s after the pause, want paused", k.State)
	}
	_, _, page = get(t, op, e.url, "/ui/kernel-rollouts")
	if !strings.Contains(page, `id="kr-resume-`+kr.ID+`"`) || !strings.Contains(page, "is paused") {
		t.Errorf("kernel rollouts page after the pause lacks the resume button or the flash:\n%s", page)
	}
	if st, _, _ := form(t, op, e.url, "/ui/kernel-rollouts/"+kr.ID+"/resume", csrf); st != http.StatusSeeOther {
		t.Errorf("resume = %d, want 303", st)
	}
	if k, _ := e.admin.KernelRollout(ctx, kr.ID); k.State != api.RolloutRunning {
		t.Errorf("kernel rollout is %s after the resume, want running", k.State)
	}
	if e.auditCount("kernel-rollout.pause") != 1 || e.auditCount("kernel-rollout.resume") != 1 {
		t.Errorf("audit: %d pauses, %d resumes of kernel rollouts; want 1 and 1", e.auditCount("kernel-rollout.pause"), e.auditCount("kernel-rollout.resume"))
	}
	if st, _, _ := form(t, op, e.url, "/ui/kernel-rollouts/"+kr.ID+"/cancel", csrf); st != http.StatusNotFound {
		t.Errorf("cancel from the dashboard = %d, want 404 (pause and resume only)", st)
	}

	// Reboots: a window that needs approval for emergencies and is shut
	// now; host 0 has installed the kernel: it awaits approval.
	_, err = e.admin.PutWindow(ctx, api.MaintenanceWindow{Name: "sunday", When: "Sun 03:00-04:00 UTC", MaxUnavailable: "1", RequireApproval: true})
	e.ok(err)
	h0 := e.fleet.Hosts[0].Creds.HostID
	e.waitFor(30*time.Second, "host 0 told to install", func() bool {
		k, err := e.admin.KernelRollout(ctx, kr.ID)
		e.ok(err)
		return k.Counts[api.KernelInstalling] == 2
	})
	rep := api.Report{RequestID: "h0-install", Action: api.ActionKernelInstall, Rollout: kr.ID, Name: kernel, Result: api.ResultOK, At: time.Now()}
	e.ok(e.client(e.fleet.Hosts[0].Creds.Credential).Do(ctx, http.MethodPost, api.PathReport, rep, &api.ReportResponse{}))
	_, _, page = get(t, op, e.url, "/ui/reboots")
	if !strings.Contains(page, `id="approve-reboot-`+h0+`"`) {
		t.Fatalf("operator's reboots page lacks the approve button of host 0:\n%s", page)
	}
	_, _, page = get(t, viewer, e.url, "/ui/reboots")
	if strings.Contains(page, `id="approve-reboot-`) {
		t.Errorf("viewer's reboots page shows an approve button")
	}
	if st, _, _ := form(t, viewer, e.url, "/ui/reboots/"+h0+"/approve", vcsrf); st != http.StatusForbidden || e.auditCount("reboot.approve") != 0 {
		t.Errorf("viewer's reboot approval = %d, want 403 and no audit entry", st)
	}
	if st, _, _ := form(t, op, e.url, "/ui/reboots/"+h0+"/approve", csrf); st != http.StatusSeeOther || e.auditCount("reboot.approve") != 1 {
		t.Errorf("reboot approval = %d with %d audit entries, want 303 and 1", st, e.auditCount("reboot.approve"))
	}
	rb, err := e.admin.SearchReboots(ctx, api.RebootQuery{Host: h0})
	e.ok(err)
	if len(rb.Hosts) != 1 || rb.Hosts[0].Approval {
		t.Errorf("host 0's reboot status after the approval = %+v, want no longer awaiting approval", rb.Hosts)
	}
}
