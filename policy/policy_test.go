package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/vuln"
)

func TestParsePolicy(t *testing.T) {
	p, err := Parse("policy.json", strings.NewReader(`{"schema_version":1,"presets":["default","nist"],
		"rules":[{"id":"urgent","min_cvss":9.0,"within":"24h"},{"id":"nist-low","disabled":true},
		{"id":"own","kind":"fix-within","severities":["medium"],"within":"2w"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range p.Rules {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, ","); got != "urgent,max-kernel-age,nist-critical,nist-high,nist-medium,own" {
		t.Errorf("rules = %s", got)
	}
	if u := p.Rule("urgent"); u.MinCVSS != 9.0 || time.Duration(u.Within) != 24*time.Hour || !u.LivePatchCounts {
		t.Errorf("urgent = %+v", u)
	}
	if o := p.Rule("own"); time.Duration(o.Within) != 14*24*time.Hour || !o.LivePatchCounts {
		t.Errorf("own = %+v", o)
	}
	if d := Default(); len(d.Rules) != 2 || d.Rules[0].MinCVSS != 7.0 || time.Duration(d.Rules[1].Within) != 30*24*time.Hour || d.Rules[1].LivePatchCounts {
		t.Errorf("Default() = %+v", d.Rules)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"schema_version":2}`, "schema_version 2"},
		{`{"schema_version":1,"presets":["sox"]}`, `unknown preset "sox"`},
		{`{"schema_version":1,"rules":[{"id":"x"}]}`, `rules[0].kind: missing required field for new rule "x"`},
		{`{"schema_version":1,"rules":[{"id":"x","kind":"fix-within","within":"30d"}]}`, "severities: missing required field"},
		{`{"schema_version":1,"rules":[{"id":"urgent","within":"soon"}]}`, `duration "soon"`},
		{`{"schema_version":1,"rules":[{"id":"urgent","kind":"fix-within"}]}`, "cannot become fix-within"},
		{`{"schema_version":1,"exceptions":[{"cves":["CVE-2026-1234"],"expires":"2026-12-31"}]}`, "exceptions[0]: reason: missing required field"},
		{`{"schema_version":1,"exceptions":[{"cves":["CVE-2026-1234"],"reason":"r"}]}`, "exceptions[0]: expires: missing required field"},
		{`{"schema_version":1,"exceptions":[{"cves":["*"],"reason":"r","expires":"2026-12-31"}]}`, `"*" needs hosts`},
		{`{"schema_version":1,"exceptions":[{"cves":["CVE-1"],"reason":"r","expires":"2026-12-31"}]}`, `"CVE-1" is not a CVE id`},
		{`{"schema_version":1,"exceptions":[{"cves":["CVE-2026-1234"],"rules":["nope"],"reason":"r","expires":"2026-12-31"}]}`, `no rule "nope"`},
		{`{"schema_version":1,"windows":[{"name":"w","when":"Tue 03:00-05:00 Nowhere/Land"}]}`, "windows[0]: w: when:"},
		{`{"schema_version":1,"surprise":true}`, `unknown field "surprise"`},
		{"{\"schema_version\":1,\n\"rules\":[}", "policy.json:2:11"},
		// The line and column of the field at fault, and its path.
		{"{\"schema_version\": 1,\n \"rules\": [\n  {\"id\": \"urgent\"},\n  {\"id\": \"mine\"}\n ]\n}", `policy.json:4:3: rules[1].kind: missing required field`},
		{"{\"schema_version\": 1,\n \"rules\": [{\"id\": \"urgent\", \"within\": \"soon\"}]}", `policy.json:2:12: rules[0]: duration "soon"`},
		{"{\"schema_version\": 1,\n \"rules\": [{\"id\": \"urgent\",\n   \"min_cvs\": 9}]}", `policy.json:3:4: rules[0].min_cvs: unknown field "min_cvs"`},
		{"{\"schema_version\": 1,\n \"unattended\": [\"apply-livepatch\", \"upgrade-package\"]}", `policy.json:2:36: unattended[1]: "upgrade-package": want one of apply-livepatch, emergency-reboot, reboot`},
		{"{\"schema_version\": 1,\n \"fallback_kernels\": \"two\"}", `policy.json:2:`},
		{"{\"schema_version\": 1,\n\n \"presets\": [\"default\", \"sox\"]}", `policy.json:3:13: presets: unknown preset "sox"`},
	} {
		if _, err := Parse("policy.json", strings.NewReader(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

// A small world where every date is known: three linux uploads, each
// fixing one CVE; NVD scores them 7.5 (high), 5.5 (medium) and 9.8
// (critical); a live patch for the 6.1.197-1 kernel fixes the critical one.
const testChangelog = `linux (6.1.200-1) bookworm-security; urgency=high

  * fix (CVE-2026-0003)

 -- T <t@example.org>  Thu, 19 Nov 2026 10:00:00 +0000

linux (6.1.199-1) bookworm-security; urgency=medium

  * fix (CVE-2026-0002)

 -- T <t@example.org>  Thu, 01 Oct 2026 10:00:00 +0000

linux (6.1.198-1) bookworm; urgency=medium

  * fix (CVE-2026-0001)

 -- T <t@example.org>  Tue, 01 Sep 2026 10:00:00 +0000
`

func testDB(t *testing.T, patchCVEs ...string) *vuln.DB {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nvd := `{"format":"NVD_CVE","version":"2.0","vulnerabilities":[`
	for i, v := range []string{"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"} {
		if i > 0 {
			nvd += ","
		}
		nvd += fmt.Sprintf(`{"cve":{"id":"CVE-2026-000%d","metrics":{"cvssMetricV31":[{"type":"Primary","cvssData":{"vectorString":%q}}]}}}`, i+1, v)
	}
	nvd += "]}"
	specs := []vuln.FeedSpec{
		{Kind: vuln.FeedDebianChangelog, Location: write("changelog", testChangelog)},
		{Kind: vuln.FeedNVD, Location: write("nvd.json", nvd)},
	}
	if len(patchCVEs) > 0 {
		m := fmt.Sprintf(`{"name":"lp-0003","cves":["%s"],"kernel":{"release":"6.1.0-97-amd64","version":"6.1.197-1"},"released":"2026-11-19T18:00:00Z"}`, strings.Join(patchCVEs, `","`))
		specs = append(specs, vuln.FeedSpec{Kind: vuln.FeedLivePatch, Location: write("lp.json", m)})
	}
	db, err := vuln.Load(t.Context(), specs, vuln.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testHost is a Debian 12 host running version running (6.1.0-97-amd64 for
// 6.1.197-1), with installed the newest kernel package and the live
// patches given.
func testHost(name, running, newest string, patches ...string) *inventory.Inventory {
	rel := func(v string) string {
		var patch int
		fmt.Sscanf(v, "6.1.%d-", &patch)
		return fmt.Sprintf("6.1.0-%d-amd64", patch-100)
	}
	inv := &inventory.Inventory{
		SchemaVersion: inventory.SchemaVersion, Hostname: name, CollectedAt: mustTime("2026-11-20T12:00:00Z"),
		OS:             inventory.OS{ID: "debian", VersionID: "12", Codename: "bookworm", Family: "deb"},
		Kernel:         inventory.Kernel{Release: rel(running), PackageVersion: running, BootTime: mustTime("2026-08-01T00:00:00Z")},
		KernelPackages: []inventory.Package{{Name: "linux-image-" + rel(running), Version: running, Release: rel(running), Running: true}},
		Metapackages:   []inventory.Package{{Name: "linux-image-amd64", Version: newest}},
		NewestKernel:   rel(running),
	}
	if newest != running {
		inv.KernelPackages = append(inv.KernelPackages, inventory.Package{Name: "linux-image-" + rel(newest), Version: newest, Release: rel(newest)})
		inv.NewestKernel = rel(newest)
	}
	for _, p := range patches {
		at := mustTime("2026-11-19T20:00:00Z")
		inv.LivePatches = append(inv.LivePatches, inventory.LivePatch{Name: p, Enabled: true, Manifest: true, CVEs: []string{"CVE-2026-0003"}, AppliedAt: &at})
	}
	return inv
}

func planOne(t *testing.T, db *vuln.DB, p *Policy, inv *inventory.Inventory, now string) *HostPlan {
	t.Helper()
	fp, err := Plan(Input{Inventories: []*inventory.Inventory{inv}, DB: db, Policy: p, Now: mustTime(now)})
	if err != nil {
		t.Fatal(err)
	}
	return &fp.Hosts[0]
}

func ruleStatus(h *HostPlan, id string) RuleResult {
	for _, r := range h.Compliance {
		if r.Rule == id {
			return r
		}
	}
	return RuleResult{Status: "absent"}
}

func itemOf(r RuleResult, cve string) Item {
	for _, it := range r.Items {
		if it.CVE == cve {
			return it
		}
	}
	return Item{Status: "absent"}
}

func mustPolicy(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := Parse("test", strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// One test per rule: what makes it compliant, at risk, breached, excepted.
func TestRuleUrgent(t *testing.T) {
	db := testDB(t, "CVE-2026-0003")
	const now = "2026-11-20T12:00:00Z"
	// Old kernel: CVE-0001 (7.5) fixed 2026-09-01: 48 h long gone;
	// CVE-0003 (9.8) fixed 2026-11-19 10:00: deadline 11-21 10:00.
	h := planOne(t, db, nil, testHost("a", "6.1.197-1", "6.1.197-1"), now)
	r := ruleStatus(h, "urgent")
	if r.Status != Breached || itemOf(r, "CVE-2026-0001").Status != Breached {
		t.Errorf("urgent on an old kernel = %s (%+v), want breached by CVE-2026-0001", r.Status, r.Items)
	}
	if it := itemOf(r, "CVE-2026-0003"); it.Status != AtRisk || !it.Deadline.Equal(mustTime("2026-11-21T10:00:00Z")) {
		t.Errorf("CVE-2026-0003 = %+v, want at risk until 2026-11-21T10:00Z", it)
	}
	if it := itemOf(r, "CVE-2026-0002"); it.Status != "absent" {
		t.Errorf("CVE-2026-0002 (medium) is under the urgent rule: %+v", it)
	}
	// Up to date: compliant.
	h = planOne(t, db, nil, testHost("a", "6.1.200-1", "6.1.200-1"), now)
	if r := ruleStatus(h, "urgent"); r.Status != Compliant {
		t.Errorf("urgent up to date = %s", r.Status)
	}
	// The live patch satisfies the urgent rule for CVE-0003.
	h = planOne(t, db, nil, testHost("a", "6.1.197-1", "6.1.197-1", "lp-0003"), now)
	if it := itemOf(ruleStatus(h, "urgent"), "CVE-2026-0003"); it.Status != Compliant {
		t.Errorf("live patched CVE-2026-0003 under urgent = %+v, want compliant", it)
	}
	// An exception.
	p := mustPolicy(t, `{"schema_version":1,"exceptions":[{"cves":["CVE-2026-0001","CVE-2026-0003"],"rules":["urgent"],"expires":"2026-12-31","reason":"accepted"}]}`)
	h = planOne(t, db, p, testHost("a", "6.1.197-1", "6.1.197-1"), now)
	if r := ruleStatus(h, "urgent"); r.Status != Excepted {
		t.Errorf("urgent with exceptions = %s, want excepted", r.Status)
	}
	// An expired exception waives nothing and says so.
	h = planOne(t, db, p, testHost("a", "6.1.197-1", "6.1.197-1"), "2027-01-02T00:00:00Z")
	if it := itemOf(ruleStatus(h, "urgent"), "CVE-2026-0001"); it.Status != Breached || !strings.Contains(it.Note, "exception expired 2027-01-01") {
		t.Errorf("after expiry = %+v, want breached noting the expiry", it)
	}
}

func TestRuleMaxKernelAge(t *testing.T) {
	db := testDB(t, "CVE-2026-0003")
	// Live patched and within 30 days of every fix but CVE-0001's: breached,
	// because live patches buy time but do not count.
	h := planOne(t, db, nil, testHost("a", "6.1.197-1", "6.1.197-1", "lp-0003"), "2026-11-20T12:00:00Z")
	r := ruleStatus(h, "max-kernel-age")
	if r.Status != Breached || itemOf(r, "CVE-2026-0003").Status != AtRisk {
		t.Errorf("max-kernel-age = %s %+v, want breached with CVE-2026-0003 at risk despite its live patch", r.Status, r.Items)
	}
	if !r.Deadline.Equal(mustTime("2026-10-01T10:00:00Z")) {
		t.Errorf("deadline = %v, want 2026-10-01T10:00Z (CVE-2026-0001's fix + 30 days)", r.Deadline)
	}
	// Only the newest fix missing, 1 day old: at risk.
	h = planOne(t, db, nil, testHost("a", "6.1.199-1", "6.1.199-1"), "2026-11-20T12:00:00Z")
	if r := ruleStatus(h, "max-kernel-age"); r.Status != AtRisk || r.DaysExposed != 1.1 {
		t.Errorf("max-kernel-age one fix behind = %s, %.1f days; want at risk, 1.1 days", r.Status, r.DaysExposed)
	}
}

func TestRuleFixWithinPCI(t *testing.T) {
	db := testDB(t, "CVE-2026-0003")
	p := mustPolicy(t, `{"schema_version":1,"presets":["pci-dss"]}`)
	if len(p.Rules) != 1 {
		t.Fatalf("rules %+v, want only pci-dss-6.3.3", p.Rules)
	}
	h := planOne(t, db, p, testHost("a", "6.1.197-1", "6.1.197-1", "lp-0003"), "2026-11-20T12:00:00Z")
	r := ruleStatus(h, "pci-dss-6.3.3")
	// CVE-0001 (high) fixed 2026-09-01: more than a month; CVE-0002 is
	// medium and out of scope; CVE-0003 is live patched, which counts.
	if r.Status != Breached || itemOf(r, "CVE-2026-0001").Status != Breached || itemOf(r, "CVE-2026-0002").Status != "absent" || itemOf(r, "CVE-2026-0003").Status != Compliant {
		t.Errorf("pci = %s %+v", r.Status, r.Items)
	}
	h = planOne(t, db, p, testHost("a", "6.1.198-1", "6.1.198-1"), "2026-11-20T12:00:00Z")
	if r := ruleStatus(h, "pci-dss-6.3.3"); r.Status != AtRisk {
		t.Errorf("pci with only the critical fix missing, one day old = %s, want at risk", r.Status)
	}
}

func TestRuleNIST(t *testing.T) {
	db := testDB(t)
	p := mustPolicy(t, `{"schema_version":1,"presets":["nist"]}`)
	h := planOne(t, db, p, testHost("a", "6.1.198-1", "6.1.198-1"), "2026-11-20T12:00:00Z")
	// CVE-0002 (medium, 2026-10-01): 90 days not over. CVE-0003 (critical,
	// 2026-11-19): 15 days not over.
	for id, want := range map[string]string{"nist-critical": AtRisk, "nist-high": Compliant, "nist-medium": AtRisk, "nist-low": Compliant} {
		if got := ruleStatus(h, id).Status; got != want {
			t.Errorf("%s = %s, want %s", id, got, want)
		}
	}
}

// A CVE no feed rates (no score, no urgency) may be urgent, critical or
// high: severity rules count it as at risk, never as compliant, and never
// as breached either.
func TestRuleUnratedSeverity(t *testing.T) {
	// The live patch names CVE-2026-0009, which no other feed knows: on a
	// kernel the patch is not for, its state and severity are unknown.
	db := testDB(t, "CVE-2026-0003", "CVE-2026-0009")
	p := mustPolicy(t, `{"schema_version":1,"presets":["default","pci-dss"]}`)
	h := planOne(t, db, p, testHost("a", "6.1.200-1", "6.1.200-1"), "2026-11-20T12:00:00Z")
	for _, id := range []string{"urgent", "pci-dss-6.3.3"} {
		r := ruleStatus(h, id)
		it := itemOf(r, "CVE-2026-0009")
		if r.Status != AtRisk || it.Status != AtRisk || !strings.Contains(it.Note, "severity unknown") || r.Deadline != nil {
			t.Errorf("%s with an unrated CVE = %s (%+v), want at risk without a deadline", id, r.Status, it)
		}
	}
}

// The decision flow, action by action.
func TestActions(t *testing.T) {
	db := testDB(t, "CVE-2026-0003")
	p := mustPolicy(t, `{"schema_version":1,"windows":[{"name":"tue","when":"Tue 03:00-05:00 Europe/Berlin"}]}`)
	kinds := func(h *HostPlan) string {
		var k []string
		for _, a := range h.Actions {
			k = append(k, a.Kind)
		}
		return strings.Join(k, ",")
	}
	// Urgent CVE-0003 with a live patch: apply it now. CVE-0001 urgent
	// without one: upgrade and emergency reboot.
	h := planOne(t, db, p, testHost("a", "6.1.197-1", "6.1.197-1"), "2026-11-20T12:00:00Z")
	if got := kinds(h); got != "apply-livepatch,upgrade-package-now,emergency-reboot" {
		t.Errorf("actions = %s", got)
	}
	if a := h.Actions[0]; a.LivePatch != "lp-0003" || !a.Deadline.Equal(mustTime("2026-11-21T10:00:00Z")) {
		t.Errorf("live patch action = %+v", a)
	}
	if a := h.Actions[1]; a.Package != "linux-image-amd64" || a.Version != "6.1.200-1" {
		t.Errorf("upgrade = %+v, want linux-image-amd64 to 6.1.200-1 (the urgent fix and the rest in one upgrade)", a)
	}
	if n := h.Actions[0].Note; n != "" {
		t.Errorf("live patch action before its deadline: note %q, want none", n)
	}
	// Past the deadline every action says it is overdue, not only the
	// emergency reboot.
	h = planOne(t, db, p, testHost("a", "6.1.197-1", "6.1.197-1"), "2026-11-22T12:00:00Z")
	for _, a := range h.Actions {
		if !strings.HasPrefix(a.Note, "overdue") {
			t.Errorf("%s after its deadline %v: note %q, want overdue", a.Kind, a.Deadline, a.Note)
		}
	}
	// Only non-urgent fixes missing (urgent means CVSS 9.9 here), installed:
	// reboot in the window.
	p9 := mustPolicy(t, `{"schema_version":1,"rules":[{"id":"urgent","min_cvss":9.9}],"windows":[{"name":"tue","when":"Tue 03:00-05:00 Europe/Berlin"}]}`)
	h = planOne(t, db, p9, testHost("b", "6.1.198-1", "6.1.200-1"), "2026-11-20T12:00:00Z")
	if got := kinds(h); got != "reboot" {
		t.Fatalf("actions = %s, want reboot", got)
	}
	a := h.Actions[0]
	if a.Window == nil || !a.Window.Start.Equal(mustTime("2026-11-24T02:00:00Z")) || a.Kernel != "6.1.0-100-amd64" || len(a.CVEs) != 2 {
		t.Errorf("reboot = %+v, want window tue at 2026-11-24T02:00Z into 6.1.0-100-amd64 for 2 CVEs", a)
	}
	// Live patched urgent CVE: the kernel update still follows in the window.
	h = planOne(t, db, p, testHost("c", "6.1.199-1", "6.1.199-1", "lp-0003"), "2026-11-20T12:00:00Z")
	if got := kinds(h); got != "upgrade-package,reboot" || h.Actions[1].Window == nil {
		t.Errorf("actions after a live patch = %s %+v, want upgrade then reboot in the window", got, h.Actions)
	}
	// No window before the deadline: said so.
	p2 := mustPolicy(t, `{"schema_version":1,"windows":[{"name":"m","when":"first Mon of the month 03:00-05:00 UTC"}]}`)
	// (max-kernel-age: 2026-11-19 + 30 days; the next first Monday after
	// 2026-12-08 is 2027-01-04.)
	h = planOne(t, db, p2, testHost("c", "6.1.199-1", "6.1.199-1", "lp-0003"), "2026-12-08T00:00:00Z")
	if n := h.Actions[len(h.Actions)-1].Note; !strings.Contains(n, "opens after the deadline") {
		t.Errorf("note = %q", n)
	}
}

// A CVE that no feed judges for this kernel, but that a live patch for this
// exact build names, still gets reviewed when it is not urgent (it used to
// fall through every case and get no action at all), and the note says
// that the patch is there.
func TestUnknownWithLivePatch(t *testing.T) {
	// CVE-2026-0009 is named only by the live patch: unknown, unscored,
	// so not urgent.
	db := testDB(t, "CVE-2026-0003", "CVE-2026-0009")
	p := mustPolicy(t, `{"schema_version":1}`)
	h := planOne(t, db, p, testHost("a", "6.1.197-1", "6.1.197-1"), "2026-11-20T12:00:00Z")
	var review *Action
	for i, a := range h.Actions {
		if a.Kind == ActReviewUnknown {
			review = &h.Actions[i]
		}
		if a.Kind == ActApplyLivePatch && slices.Contains(a.CVEs, "CVE-2026-0009") {
			t.Errorf("apply-livepatch %+v names CVE-2026-0009, which is not urgent", a)
		}
	}
	if review == nil {
		t.Fatalf("actions = %+v, want review-unknown for CVE-2026-0009", h.Actions)
	}
	if !slices.Equal(review.CVEs, []string{"CVE-2026-0009"}) {
		t.Errorf("review-unknown CVEs = %v, want [CVE-2026-0009]", review.CVEs)
	}
	if want := "lp-0003 (CVE-2026-0009)"; !strings.Contains(review.Note, want) {
		t.Errorf("review-unknown note = %q, want it to name %s", review.Note, want)
	}
}

// Bad input never yields "compliant".
func TestPlanRefusesBadInput(t *testing.T) {
	db := testDB(t)
	for _, tt := range []struct {
		name string
		mod  func(*inventory.Inventory)
		want string
	}{
		{"unknown distro", func(i *inventory.Inventory) { i.OS.ID = "haiku" }, `os.id "haiku": unknown distribution`},
		{"unparsable version", func(i *inventory.Inventory) { i.Kernel.PackageVersion = "latest" }, `debian version "latest"`},
	} {
		inv := testHost("bad", "6.1.197-1", "6.1.197-1")
		tt.mod(inv)
		_, err := Plan(Input{Inventories: []*inventory.Inventory{inv}, Names: []string{"bad.json"}, DB: db, Now: mustTime("2026-11-20T12:00:00Z")})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "bad.json") {
			t.Errorf("%s: Plan = %v, want an error naming bad.json and %q", tt.name, err, tt.want)
		}
	}
	// Two inventories of one host.
	a, b := testHost("x", "6.1.197-1", "6.1.197-1"), testHost("x", "6.1.200-1", "6.1.200-1")
	if _, err := Plan(Input{Inventories: []*inventory.Inventory{a, b}, Names: []string{"a.json", "b.json"}, DB: db, Now: mustTime("2026-11-20T12:00:00Z")}); err == nil || !strings.Contains(err.Error(), "also in a.json") {
		t.Errorf("duplicate host: %v", err)
	}
}

// TestStaleInventoryIsNeverCompliant: an inventory older than the policy
// trusts, or dated after the plan, cannot make a host compliant.
func TestStaleInventoryIsNeverCompliant(t *testing.T) {
	db := testDB(t, "CVE-2026-0003")
	fresh := "2026-11-20T12:00:00Z" // the inventories are collected 2026-11-20T12:00Z
	h := planOne(t, db, nil, testHost("a", "6.1.200-1", "6.1.200-1"), fresh)
	if r := ruleStatus(h, "urgent"); r.Status != Compliant || r.Note != "" {
		t.Fatalf("fresh up-to-date host: urgent = %s (%q), want compliant", r.Status, r.Note)
	}
	for _, tc := range []struct{ now, want string }{
		{"2026-11-28T12:00:01Z", "8 days old"},
		{"2026-11-20T10:00:00Z", "after the plan's time"},
	} {
		h := planOne(t, db, nil, testHost("a", "6.1.200-1", "6.1.200-1"), tc.now)
		r := ruleStatus(h, "urgent")
		if r.Status != AtRisk || !strings.Contains(r.Note, tc.want) {
			t.Errorf("now %s: urgent = %s (%q), want at risk noting %q", tc.now, r.Status, r.Note, tc.want)
		}
	}
	p := mustPolicy(t, `{"schema_version":1,"max_inventory_age_days":30}`)
	if r := ruleStatus(planOne(t, db, p, testHost("a", "6.1.200-1", "6.1.200-1"), "2026-11-28T12:00:01Z"), "urgent"); r.Status != Compliant {
		t.Errorf("8-day-old inventory under a 30-day policy: urgent = %s (%q), want compliant", r.Status, r.Note)
	}
}
