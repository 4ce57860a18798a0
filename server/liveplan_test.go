package server_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/agent"
	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/policy"
)

// planNow is the server's clock in the plan tests: the day the fleet's
// inventories were collected.
var planNow = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

// fleetInventory is policy/testdata/fleet/NAME.json as host hostname.
func fleetInventory(t *testing.T, name, hostname string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "fleet", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Replace(b, []byte(`"hostname": "`+name+`"`), []byte(`"hostname": "`+hostname+`"`), 1)
}

// sendInventory checks a host in with an inventory.
func (e *env) sendInventory(c *agent.Credentials, inv []byte) {
	e.t.Helper()
	e.ok(e.sync(c.Credential, api.Checkin{KernelRelease: kernel, Health: api.HealthOK, Inventory: inv}))
}

// planHosts reads the whole live plan, a page of limit hosts at a time.
func (e *env) planHosts(q api.PlanQuery) (*api.PlanPage, map[string]api.PlanHost) {
	e.t.Helper()
	hosts := map[string]api.PlanHost{}
	var first *api.PlanPage
	for {
		p, err := e.admin.Plan(context.Background(), q)
		e.ok(err)
		if first == nil {
			first = p
		}
		for _, h := range p.Page {
			if _, dup := hosts[h.HostID]; dup {
				e.t.Fatalf("host %s on two pages", h.HostID)
			}
			hosts[h.HostID] = h
		}
		if p.Next == "" {
			return first, hosts
		}
		q.After = p.Next
	}
}

// waitPlan polls the live plan until ok.
func (e *env) waitPlan(what string, ok func(*api.PlanPage, map[string]api.PlanHost) bool) (*api.PlanPage, map[string]api.PlanHost) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, hs := e.planHosts(api.PlanQuery{})
		if ok(p, hs) {
			return p, hs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("live plan: %s: not after 30s; plan %+v", what, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func actionKinds(h api.PlanHost) []string {
	var out []string
	if h.Plan != nil {
		for _, a := range h.Plan.Actions {
			out = append(out, a.Kind)
		}
	}
	return out
}

// hasAction tells whether h's plan has an action of kind for cve.
func hasAction(h api.PlanHost, kind, cve string) bool {
	if h.Plan == nil {
		return false
	}
	return slices.ContainsFunc(h.Plan.Actions, func(a policy.Action) bool { return a.Kind == kind && slices.Contains(a.CVEs, cve) })
}

// scored counts the findings of h's plan that have a CVSS score.
func scored(h api.PlanHost) int {
	n := 0
	if h.Plan != nil {
		for _, f := range h.Plan.Exposure {
			if f.Severity.Scored {
				n++
			}
		}
	}
	return n
}

// The live plan over real feeds and inventories: every host planned, two
// hosts of one kernel situation in one group; a feed update re-plans them
// all; one host's new inventory re-plans its group only; a bundle
// published for two hosts' kernel turns their emergency reboot into
// "apply the live patch". Pages, the host and label selections, a viewer.
func TestLivePlan(t *testing.T) {
	nvdDir := t.TempDir() // no record yet: the feed fails, the others make the database
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: []string{
		"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
		"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
		"osv=" + filepath.Join(vulnData, "osv"),
		"nvd=" + nvdDir,
	}})
	ctx := context.Background()
	creds, _ := e.manualHosts("lp", 3)
	e.sendInventory(creds[0], fleetInventory(t, "web2", "lp-0"))
	e.sendInventory(creds[1], fleetInventory(t, "web2", "lp-1"))
	e.sendInventory(creds[2], fleetInventory(t, "db1", "lp-2"))
	id0, id1, id2 := creds[0].HostID, creds[1].HostID, creds[2].HostID

	p, hs := e.waitPlan("3 hosts planned", func(p *api.PlanPage, hs map[string]api.PlanHost) bool {
		return p.Hosts == 3 && p.Failed == 0 && p.FeedGeneration > 0
	})
	if p.Groups != 2 || hs[id0].Group != hs[id1].Group || hs[id0].Group == hs[id2].Group {
		t.Errorf("groups: %d (%s %s %s), want 2: lp-0 and lp-1 (web2's kernel) together", p.Groups, hs[id0].Group, hs[id1].Group, hs[id2].Group)
	}
	if hs[id0].Plan.Hostname != "lp-0" || hs[id2].Plan.Kernel.Release != "6.1.0-56-amd64" || p.PolicyVersion != 0 || p.Policy == nil || len(p.Fleet) != 2 {
		t.Errorf("plan = %+v, want lp-0, lp-2 on 6.1.0-56-amd64, the default policy's two rules", p)
	}
	scoredBefore := scored(hs[id0])
	t.Logf("before the feed update: lp-0 %v, lp-2 %v, generation %d", actionKinds(hs[id0]), actionKinds(hs[id2]), p.FeedGeneration)

	// A feed update: NVD's scores make CVE-2026-99228 urgent.
	copyFile(t, filepath.Join(vulnData, "nvd", "page.json"), filepath.Join(nvdDir, "page.json"))
	_, err := e.admin.RefreshFeeds(ctx)
	e.ok(err)
	before := hs
	p, hs = e.waitPlan("re-planned after the feed update", func(np *api.PlanPage, hs map[string]api.PlanHost) bool {
		return np.FeedGeneration > p.FeedGeneration && hs[id0].EvaluatedAt.After(before[id0].EvaluatedAt) && hs[id2].EvaluatedAt.After(before[id2].EvaluatedAt)
	})
	t.Logf("lp-0's findings with a CVSS score: %d before NVD's feed, %d after", scoredBefore, scored(hs[id0]))
	if scored(hs[id0]) <= scoredBefore || scored(hs[id1]) != scored(hs[id0]) {
		t.Errorf("lp-0/lp-1 have %d/%d scored findings after NVD's feed came, %d before; want more", scored(hs[id0]), scored(hs[id1]), scoredBefore)
	}
	if !hasAction(hs[id0], policy.ActEmergencyReboot, "CVE-2026-99228") || hasAction(hs[id0], policy.ActApplyLivePatch, "CVE-2026-99228") {
		t.Fatalf("lp-0's actions = %v, want an emergency reboot for CVE-2026-99228 and no live patch", actionKinds(hs[id0]))
	}

	// One host's new inventory re-plans its group only.
	before = hs
	e.sendInventory(creds[2], fleetInventory(t, "app1", "lp-2"))
	p, hs = e.waitPlan("lp-2 re-planned", func(_ *api.PlanPage, hs map[string]api.PlanHost) bool {
		return hs[id2].Plan != nil && hs[id2].Plan.Kernel.Release == "6.1.0-55-amd64"
	})
	if !hs[id0].EvaluatedAt.Equal(before[id0].EvaluatedAt) || !hs[id1].EvaluatedAt.Equal(before[id1].EvaluatedAt) {
		t.Errorf("lp-2's new inventory re-planned lp-0/lp-1 too (evaluated %v, %v; were %v)", hs[id0].EvaluatedAt, hs[id1].EvaluatedAt, before[id0].EvaluatedAt)
	}
	if hs[id2].Group == before[id2].Group || p.Groups != 2 {
		t.Errorf("lp-2's group = %s (was %s), %d groups; want a new group and still 2", hs[id2].Group, before[id2].Group, p.Groups)
	}

	// A bundle published for web2's kernel fixing the CVE: apply it now.
	publishFor(t, e, "lp_web2", "6.1.0-54-amd64", "6.1.190-1", "CVE-2026-99228")
	_, hs = e.waitPlan("the live patch in lp-0's plan", func(_ *api.PlanPage, hs map[string]api.PlanHost) bool {
		return hasAction(hs[id0], policy.ActApplyLivePatch, "CVE-2026-99228") && hasAction(hs[id1], policy.ActApplyLivePatch, "CVE-2026-99228")
	})

	if a := hs[id0].Plan.Actions[0]; a.Kind != policy.ActApplyLivePatch || a.LivePatch != "lp_web2" {
		t.Errorf("lp-0's first action after publishing = %s %q, want %s lp_web2", a.Kind, a.LivePatch, policy.ActApplyLivePatch)
	}
	if hasAction(hs[id2], policy.ActApplyLivePatch, "CVE-2026-99228") {
		t.Errorf("lp-2 (another kernel) got the live patch for web2's kernel")
	}

	// Pages of one host, one host by name or id, selectors.
	_, paged := e.planHosts(api.PlanQuery{Limit: 1})
	if len(paged) != 3 {
		t.Errorf("pages of 1 host gave %d hosts, want 3", len(paged))
	}
	one, err := e.admin.Plan(ctx, api.PlanQuery{Host: "lp-2"})
	if err != nil || one.Hosts != 1 || len(one.Page) != 1 || one.Page[0].HostID != id2 {
		t.Errorf("Plan(host lp-2) = %+v, %v; want lp-2 alone", one, err)
	}
	if _, err := e.admin.Plan(ctx, api.PlanQuery{Host: "nosuch"}); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("Plan(host nosuch) = %v, want 404", err)
	}
	if none, err := e.admin.Plan(ctx, api.PlanQuery{Selector: map[string]string{"dc": "ams"}}); err != nil || none.Hosts != 0 || len(none.Page) != 0 {
		t.Errorf("Plan(dc=ams) = %+v, %v; want no host", none, err)
	}
	if err := e.admin.Do(ctx, http.MethodGet, api.PathPlan+"?label=x", nil, nil); !api.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("GET plan?label=x: want 400")
	}
	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "v", Role: api.RoleViewer})
	e.ok(err)
	if _, err := e.client(tv.Secret).Plan(ctx, api.PlanQuery{}); err != nil {
		t.Errorf("viewer GET plan = %v", err)
	}

	// The report the server makes of the plan: a section per host, the
	// fleet's standing the plan's; a host, a label; bad days, no such host.
	rep, err := e.client(tv.Secret).FleetReport(ctx, api.PlanQuery{}, 30)
	if err != nil || len(rep.Report.Hosts) != 3 || len(rep.Report.Series) != 30 || len(rep.Unplanned) != 0 {
		t.Fatalf("FleetReport() = %+v, %v; want 3 hosts, 30 days", rep, err)
	}
	whole, _ := e.planHosts(api.PlanQuery{})
	for i, fr := range rep.Report.Fleet {
		if fr.Rule != whole.Fleet[i].Rule || fr.Hosts[policy.Breached] != whole.Fleet[i].Hosts[policy.Breached] || fr.Hosts[policy.AtRisk] != whole.Fleet[i].Hosts[policy.AtRisk] {
			t.Errorf("report's fleet rule %d = %+v, want the plan's %+v", i, fr, whole.Fleet[i])
		}
	}
	if rep, err := e.admin.FleetReport(ctx, api.PlanQuery{Host: "lp-2"}, 0); err != nil || len(rep.Report.Hosts) != 1 || rep.Report.Hosts[0].Hostname != "lp-2" || rep.Report.Series != nil {
		t.Errorf("FleetReport(host lp-2, no history) = %+v, %v; want lp-2 alone, no series", rep, err)
	}
	if _, err := e.admin.FleetReport(ctx, api.PlanQuery{Host: "nosuch"}, 30); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("FleetReport(host nosuch) = %v, want 404", err)
	}
	if err := e.admin.Do(ctx, http.MethodGet, api.PathPlanReport+"?days=9999", nil, nil); !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "days") {
		t.Errorf("GET plan/report?days=9999 = %v, want 400 naming days", err)
	}

	// A revoked host leaves the plan.
	e.ok(e.admin.RevokeHost(ctx, id2))
	e.waitPlan("lp-2 gone", func(p *api.PlanPage, hs map[string]api.PlanHost) bool { return p.Hosts == 2 })
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// publishFor publishes a signed bundle for the kernel release and package
// version, fixing cves.
func publishFor(t *testing.T, e *env, name, release, version string, cves ...string) api.BundleInfo {
	t.Helper()
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion, Name: name, Level: 1, Replace: true,
		Kernel:    bundle.Kernel{Release: release, PackageVersion: version},
		CVEs:      cves,
		Functions: []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Created:   planNow.Add(-time.Hour), Description: "fix " + strings.Join(cves, ", "),
	}
	var buf bytes.Buffer
	if err := bundle.Create(&buf, m, []byte("\x7fELF module of the test, never loaded"), e.key); err != nil {
		t.Fatal(err)
	}
	info, err := e.admin.PublishBundle(context.Background(), buf.Bytes())
	e.ok(err)
	return *info
}

// The policy on the server: versioned, audited, the plan made again under
// it; a malformed upload is refused with file, line and field and changes
// nothing; only admins set it; it survives a restart.
func TestServerPolicy(t *testing.T) {
	e := startEnv(t, envOpt{now: func() time.Time { return planNow }, feeds: []string{
		"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
		"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
	}})
	ctx := context.Background()
	creds, _ := e.manualHosts("pol", 1)
	e.sendInventory(creds[0], fleetInventory(t, "web2", "pol-0"))
	e.waitPlan("pol-0 planned", func(p *api.PlanPage, _ map[string]api.PlanHost) bool { return p.Hosts == 1 && p.Failed == 0 })

	st, err := e.admin.Policy(ctx, 0)
	e.ok(err)
	if st.Current.Version != 0 || st.Current.Policy == nil || len(st.Current.Policy.Rules) != 2 || len(st.Versions) != 0 {
		t.Fatalf("Policy() before any upload = %+v, want the default (version 0) and no versions", st)
	}

	bad := "{\n  \"schema_version\": 1,\n  \"presets\": [\"default\", \"nist\"],\n  \"rules\": [\n    {\"id\": \"own\", \"within\": \"30d\"}\n  ]\n}\n"
	_, err = e.admin.PutPolicy(ctx, api.PolicyUpload{File: "fleet.json", Source: bad})
	if !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "fleet.json:5:5: rules[0].kind: missing required field") {
		t.Fatalf("PutPolicy(no kind) = %v, want 400 naming fleet.json:5:5 and rules[0].kind", err)
	}
	if st, _ := e.admin.Policy(ctx, 0); st.Current.Version != 0 || len(st.Versions) != 0 || e.auditCount("policy.set") != 0 {
		t.Fatalf("a refused policy changed something: %+v, %d audit entries", st, e.auditCount("policy.set"))
	}

	good := strings.Replace(bad, `"within": "30d"`, `"kind": "fix-within", "severities": ["critical"], "within": "7d"`, 1)
	v, err := e.admin.PutPolicy(ctx, api.PolicyUpload{File: "fleet.json", Source: good, Reason: "audit finding 12"})
	e.ok(err)
	if v.Version != 1 || v.Policy == nil || v.Policy.Rule("own") == nil || v.Policy.Rule("nist-high") == nil {
		t.Fatalf("PutPolicy(good) = %+v, want version 1 with nist and own rules", v)
	}
	p, _ := e.waitPlan("planned under version 1", func(p *api.PlanPage, hs map[string]api.PlanHost) bool {
		return p.PolicyVersion == 1 && len(hs[creds[0].HostID].Plan.Compliance) == 7
	})
	if len(p.Fleet) != 7 || p.Policy.Rule("own") == nil {
		t.Errorf("plan under version 1: %d fleet rules, want 7 (default 2, nist 4, own)", len(p.Fleet))
	}
	audit := e.audit(api.AuditQuery{Action: "policy.set"})
	if len(audit) != 1 || audit[0].Target != "v1" || !strings.Contains(string(audit[0].Detail), "audit finding 12") || !strings.Contains(string(audit[0].Detail), v.SHA256) {
		t.Errorf("policy.set audit entries = %+v, want one for v1 with the reason and digest", audit)
	}
	_, err = e.admin.PutPolicy(ctx, api.PolicyUpload{File: "default.json", Source: `{"schema_version": 1, "unattended": ["apply-livepatch"]}`})
	e.ok(err)

	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "op", Role: api.RoleOperator})
	e.ok(err)
	if _, err := e.client(tv.Secret).PutPolicy(ctx, api.PolicyUpload{File: "x.json", Source: good}); !api.IsStatus(err, http.StatusForbidden) {
		t.Errorf("operator PutPolicy = %v, want 403", err)
	}

	e.restart(0)
	st, err = e.admin.Policy(ctx, 0)
	e.ok(err)
	if st.Current.Version != 2 || !st.Current.Policy.AllowsUnattended(policy.ActApplyLivePatch) || len(st.Versions) != 2 || st.Versions[0].Version != 2 || st.Versions[1].Source != "" {
		t.Errorf("Policy() after a restart = %+v, want version 2 in force and both listed, newest first", st)
	}
	old, err := e.admin.Policy(ctx, 1)
	if err != nil || old.Current.Version != 1 || old.Current.Source != good || old.Current.File != "fleet.json" {
		t.Errorf("Policy(1) = %+v, %v; want version 1's file as uploaded", old, err)
	}
	if _, err := e.admin.Policy(ctx, 9); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("Policy(9) = %v, want 404", err)
	}
	e.waitPlan("planned under version 2 after the restart", func(p *api.PlanPage, _ map[string]api.PlanHost) bool {
		return p.PolicyVersion == 2 && p.Hosts == 1 && p.Failed == 0
	})
}
