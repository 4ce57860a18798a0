package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

// TestFleetKernelsAndReboots drives windows, kernel rollouts (by hand and
// from a real plan of the policy fixtures) and the reboot view through the
// command line against a real server.
func TestFleetKernelsAndReboots(t *testing.T) {
	url, fp := startTestServer(t)
	root := t.TempDir()
	ctx := context.Background()
	jsonOut := func(v any, args ...string) {
		t.Helper()
		out, errs, code := runCLI(t, root, args...)
		if code != 0 {
			t.Fatalf("stent %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("stent %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Windows: a bad expression is refused before anything is sent, a
	// bad budget by the server naming the field; a good one is listed.
	if _, errs, code := runCLI(t, root, "fleet", "windows", "set", "web", "--when", "Tuesdays at dawn", "--max-unavailable", "1"); code == 0 || !strings.Contains(errs, "--when") {
		t.Errorf("windows set with a bad --when: exit %d, %q", code, errs)
	}
	if _, errs, code := runCLI(t, root, "fleet", "windows", "set", "web", "--when", "Tue 03:00-05:00 Europe/Berlin", "--max-unavailable", "0"); code == 0 || !strings.Contains(errs, "max_unavailable") {
		t.Errorf("windows set with max-unavailable 0: exit %d, %q", code, errs)
	}
	var win api.MaintenanceWindow
	jsonOut(&win, "fleet", "windows", "set", "web", "--when", "Tue 03:00-05:00 Europe/Berlin", "--selector", "role=web", "--max-unavailable", "20%", "--lease-ttl", "45m", "--require-approval", "--json")
	if win.MaxUnavailable != "20%" || time.Duration(win.LeaseTTL) != 45*time.Minute || !win.RequireApproval || win.Selector["role"] != "web" {
		t.Errorf("windows set = %+v", win)
	}
	jsonOut(&win, "fleet", "windows", "set", "spare", "--when", "daily 01:00-02:00 UTC", "--max-unavailable", "1", "--json")
	var ws []api.MaintenanceWindow
	jsonOut(&ws, "fleet", "windows", "--json")
	if len(ws) != 2 || ws[0].Name != "spare" || ws[1].Name != "web" {
		t.Errorf("windows = %+v, want spare and web", ws)
	}
	out, _, code := runCLI(t, root, "fleet", "windows")
	if code != 0 || !strings.Contains(out, "Tue 03:00-05:00 Europe/Berlin") || !strings.Contains(out, "role=web") || !strings.Contains(out, "emergencies") {
		t.Errorf("windows text:\n%s", out)
	}
	if out, _, code := runCLI(t, root, "fleet", "windows", "delete", "spare"); code != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("windows delete: exit %d: %s", code, out)
	}
	if _, errs, code := runCLI(t, root, "fleet", "windows", "delete", "spare"); code == 0 || !strings.Contains(errs, "no maintenance window spare") {
		t.Errorf("deleting a missing window: exit %d, %q", code, errs)
	}

	// Hosts named as in the plan fixtures; app1 and db1 need nothing.
	var tok api.Token
	jsonOut(&tok, "fleet", "enroll-token", "--label", "role=web", "--json") // labels come from the token
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*api.Client{}
	for _, name := range []string{"web1", "web2", "alma1", "db1"} {
		c, err := agent.Enroll(ctx, hc, url, api.TLSOptions{Fingerprint: fp}, tok.Secret, name, "", map[string]string{"role": "web"})
		if err != nil {
			t.Fatalf("enroll %s: %v", name, err)
		}
		cl := &api.Client{BaseURL: url, Token: c.Credential, HTTP: hc}
		if err := cl.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{Hostname: name, KernelRelease: "6.1.0-54-amd64", Health: api.HealthOK,
			Kernel: &api.KernelCheckin{Running: "6.1.0-54-amd64", Blockers: []string{"file /etc/stent/no-reboot"}}}, &api.SyncResponse{}); err != nil {
			t.Fatal(err)
		}
		clients[name] = cl
	}

	// A real plan of the fixtures, saved as stent plan --json writes it.
	code, planJSON, errs := execStent(t, append([]string{"plan", "--inventory", filepath.Join(policyData, "fleet"), "--policy", filepath.Join(policyData, "policy.json"), "--json"}, feedArgs()...)...)
	if code != 0 {
		t.Fatalf("stent plan: exit %d: %s", code, errs)
	}
	planFile := filepath.Join(t.TempDir(), "plan.json")
	os.WriteFile(planFile, []byte(planJSON), 0o644)
	// web2 upgrades linux-image-amd64 to 6.1.192-1: its release must be named.
	if _, errs, code := runCLI(t, root, "fleet", "kernels", "rollout", "--from-plan", planFile); code == 0 || !strings.Contains(errs, "--release 6.1.192-1=") {
		t.Errorf("--from-plan without the upgrade's release: exit %d, %q", code, errs)
	}
	var none []api.KernelRollout
	jsonOut(&none, "fleet", "kernels", "--json")
	if len(none) != 0 {
		t.Fatalf("a refused --from-plan started %d rollouts", len(none))
	}
	var krs []api.KernelRollout
	out, errs, code = runCLI(t, root, "fleet", "kernels", "rollout", "--from-plan", planFile, "--release", "6.1.192-1=6.1.0-57-amd64", "--json")
	if code != 0 {
		t.Fatalf("kernels rollout --from-plan: exit %d: %s", code, errs)
	}
	if err := json.Unmarshal([]byte(out), &krs); err != nil {
		t.Fatal(err)
	}
	byRelease := map[string]api.KernelRollout{}
	for _, kr := range krs {
		byRelease[kr.Release] = kr
	}
	web2, web1, alma := byRelease["6.1.0-57-amd64"], byRelease["6.1.0-55-amd64"], byRelease["5.14.0-427.13.1.el9_4.x86_64"]
	if len(krs) != 3 || web2.ID == "" || web1.ID == "" || alma.ID == "" {
		t.Fatalf("rollouts from the plan = %+v, want three: web2's upgrade, web1's and alma1's reboots", krs)
	}
	if web2.Version != "6.1.192-1" || !web2.Emergency || web2.Deadline == nil || !web2.Deadline.Equal(time.Date(2026, 11, 17, 10, 29, 58, 0, time.UTC)) ||
		strings.Join(web2.Packages, " ") != "linux-image-6.1.0-57-amd64 linux-image-amd64" || strings.Join(web2.Hosts, ",") != "web2" ||
		!strings.Contains(web2.Reason, "CVE-") || web2.Counts[api.KernelInstalling] != 1 {
		t.Errorf("web2's rollout = %+v", web2)
	}
	if web1.Version != "" || !web1.Emergency || strings.Join(web1.Hosts, ",") != "web1" {
		t.Errorf("web1's rollout = %+v", web1)
	}
	if strings.Join(alma.Packages, " ") != "kernel-core-5.14.0-427.13.1.el9_4.x86_64" {
		t.Errorf("alma1's rollout packages = %v, want its kernel-core", alma.Packages)
	}
	// A plan host that is not enrolled is left out, and named.
	fplan, err := policy.DecodePlan(planFile, strings.NewReader(planJSON))
	if err != nil {
		t.Fatal(err)
	}
	reqs, warnings, err := kernelRolloutsFromPlan(fplan, []string{"6.1.0-57-amd64"}, map[string]bool{"web1": true, "web2": true})
	if err != nil || len(reqs) != 2 || len(warnings) != 1 || !strings.HasPrefix(warnings[0], "alma1: not enrolled") {
		t.Errorf("kernelRolloutsFromPlan without alma1 enrolled = %+v, %q, %v; want 2 rollouts and a warning naming alma1", reqs, warnings, err)
	}

	// By hand, and the actions.
	var hand []api.KernelRollout
	jsonOut(&hand, "fleet", "kernels", "rollout", "--release", "6.1.0-58-amd64", "--version", "6.1.193-1", "--host", "db1", "--reason", "test", "--json")
	if len(hand) != 1 || hand[0].Hosts[0] != "db1" || hand[0].Packages[0] != "linux-image-6.1.0-58-amd64" {
		t.Fatalf("kernels rollout by hand = %+v", hand)
	}
	var kr api.KernelRollout
	jsonOut(&kr, "fleet", "kernels", "pause", hand[0].ID, "--json")
	if kr.State != api.RolloutPaused {
		t.Errorf("pause: %s", kr.State)
	}
	jsonOut(&kr, "fleet", "kernels", "resume", hand[0].ID, "--json")
	jsonOut(&kr, "fleet", "kernels", "cancel", hand[0].ID, "--json", "--reason", "wrong version")
	if kr.State != "cancelled" {
		t.Errorf("cancel: %s", kr.State)
	}
	if _, errs, code := runCLI(t, root, "fleet", "kernels", "pause", hand[0].ID); code == 0 || !strings.Contains(errs, "cancelled") {
		t.Errorf("pausing a cancelled kernel rollout: exit %d, %q", code, errs)
	}
	out, _, code = runCLI(t, root, "fleet", "kernels", web2.ID)
	if code != 0 || !strings.Contains(out, "web2") || !strings.Contains(out, "installing") {
		t.Errorf("kernels ID text:\n%s", out)
	}

	// The reboot view names the window, the blockers and what each waits for.
	var st api.RebootStatus
	jsonOut(&st, "fleet", "reboots", "--json")
	found := false
	for _, h := range st.Hosts {
		if h.Hostname == "web2" {
			found = true
			if h.Window != "web" || h.Rollout != web2.ID || h.State != api.KernelInstalling || len(h.Blockers) != 1 || !strings.Contains(h.Wait, "installing") {
				t.Errorf("reboot status of web2 = %+v", h)
			}
		}
	}
	if !found {
		t.Errorf("reboot status lacks web2: %+v", st)
	}
	out, _, code = runCLI(t, root, "fleet", "reboots")
	if code != 0 || !strings.Contains(out, "web2") || !strings.Contains(out, "blocked: file /etc/stent/no-reboot") {
		t.Errorf("reboots text:\n%s", out)
	}
	if out, errs, code := runCLI(t, root, "fleet", "reboots", "approve", "web2", "--reason", "exploited"); code != 0 || !strings.Contains(out, "approved") {
		t.Errorf("reboots approve: exit %d, %s %s", code, out, errs)
	}
	if _, errs, code := runCLI(t, root, "fleet", "reboots", "approve", "nosuchhost"); code == 0 || !strings.Contains(errs, "no enrolled host") {
		t.Errorf("approving an unknown host: exit %d, %q", code, errs)
	}
	var audit []api.AuditEntry
	jsonOut(&audit, "fleet", "audit", "--json", "--limit", "1000")
	actions := map[string]bool{}
	for _, a := range audit {
		actions[a.Action] = true
	}
	for _, want := range []string{"window.set", "window.delete", "kernel-rollout.create", "kernel-rollout.pause", "kernel-rollout.cancel", "reboot.approve"} {
		if !actions[want] {
			t.Errorf("audit lacks %s", want)
		}
	}
}
