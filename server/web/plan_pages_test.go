package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/server/web"
)

// fleetInventories gives host i policy/testdata/fleet's web2 (even i) or
// db1 (odd i) inventory, under the name sim-i.
func fleetInventories(t testing.TB) func(i int) json.RawMessage {
	t.Helper()
	var invs [2][]byte
	for k, name := range []string{"web2", "db1"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "policy", "testdata", "fleet", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		invs[k] = b
	}
	return func(i int) json.RawMessage {
		name := []string{"web2", "db1"}[i%2]
		return json.RawMessage(strings.Replace(string(invs[i%2]), `"hostname": "`+name+`"`, fmt.Sprintf(`"hostname": "sim-%d"`, i), 1))
	}
}

// startPlanEnv is startEnv with real feeds and inventories: every host is
// planned.
func startPlanEnv(t testing.TB, n int, canaryDelay time.Duration) *env {
	t.Helper()
	e := startEnvWith(t, n, canaryDelay, envOpt{feeds: planFeeds, inventory: fleetInventories(t), exposure: time.Second})
	e.waitFor(60*time.Second, fmt.Sprintf("%d hosts planned", n), func() bool {
		p, err := e.admin.Plan(context.Background(), api.PlanQuery{Limit: 1})
		e.ok(err)
		return p.Hosts == n && p.Failed == 0 && p.Error == ""
	})
	e.waitFor(10*time.Second, fmt.Sprintf("the CVE index of %d hosts", n), func() bool {
		p, err := e.admin.PlanCVEs(context.Background(), api.CVEQuery{Limit: 1})
		e.ok(err)
		return p.Hosts == n
	})
	return e
}

// TestCVEPages: the CVE list and one CVE's page against the API's
// answers, for an admin and a viewer; the links from the overview and a
// host; pages and their bounds; bad filters and unknown CVEs.
func TestCVEPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and 6 simulated hosts")
	}
	e := startPlanEnv(t, 6, 0)
	ctx := context.Background()
	all, err := e.admin.PlanCVEs(ctx, api.CVEQuery{})
	e.ok(err)
	if all.Total <= cvePageRows || all.Hosts != 6 {
		t.Fatalf("PlanCVEs: %d CVEs on %d hosts; the test wants more than a page on 6", all.Total, all.Hosts)
	}
	top := all.CVEs[0]
	admin, viewer := e.browser(), e.browser()
	login(t, admin, e.url, e.admin.Token)
	login(t, viewer, e.url, e.token("cve-viewer", api.RoleViewer))
	for who, c := range map[string]*http.Client{"admin": admin, "viewer": viewer} {
		st, _, page := get(t, c, e.url, "/ui/cves")
		if st != http.StatusOK || !strings.Contains(page, fmt.Sprintf(`data-total="%d"`, all.Total)) || strings.Count(page, `class="cve-link"`) != cvePageRows {
			t.Errorf("%s: /ui/cves = %d, want %d CVEs, %d a page:\n%s", who, st, all.Total, cvePageRows, page)
		}
		if !strings.Contains(page, `href="/ui/cves/`+top.CVE+`"`) || !strings.Contains(page, `id="next"`) || strings.Contains(page, `id="prev"`) {
			t.Errorf("%s: /ui/cves does not start with %s and a next link", who, top.CVE)
		}
		st, _, page = get(t, c, e.url, "/ui/cves/"+top.CVE)
		if st != http.StatusOK || strings.Count(page, `class="host-link"`) != top.Hosts || !strings.Contains(page, fmt.Sprintf(`id="cve-hosts">%d<`, top.Hosts)) {
			t.Errorf("%s: /ui/cves/%s = %d, want its %d hosts:\n%s", who, top.CVE, st, top.Hosts, page)
		}
	}
	// The second page, and past the end.
	_, _, page := get(t, admin, e.url, "/ui/cves?offset=50")
	if !strings.Contains(page, fmt.Sprintf("51–%d of %d CVEs", min(100, all.Total), all.Total)) || !strings.Contains(page, `id="prev"`) {
		t.Errorf("/ui/cves?offset=50 is not the second page")
	}
	if st, _, page := get(t, admin, e.url, fmt.Sprintf("/ui/cves?offset=%d", all.Total+5)); st != http.StatusOK || strings.Contains(page, `class="cve-link"`) {
		t.Errorf("/ui/cves past the end = %d, want 200 and no row", st)
	}
	// A filter: the API's count.
	crit, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Severity: "critical"})
	e.ok(err)
	if _, _, page := get(t, admin, e.url, "/ui/cves?severity=critical"); !strings.Contains(page, fmt.Sprintf(`data-total="%d"`, crit.Total)) {
		t.Errorf("/ui/cves?severity=critical does not show the API's %d CVEs", crit.Total)
	}
	// Bad input, said clearly.
	for path, want := range map[string]struct {
		status int
		words  string
	}{
		"/ui/cves?offset=-3":          {400, `offset &#34;-3&#34;: want a whole number`},
		"/ui/cves?severity=dire":      {400, `severity &#34;dire&#34;: want one of critical`},
		"/ui/cves?fix=pray":           {400, `fix &#34;pray&#34;: want one of live-patch`},
		"/ui/cves/CVE-1999-0001":      {404, "no planned host is exposed to CVE-1999-0001"},
		"/ui/cves/not-a-cve?offset=x": {400, `offset &#34;x&#34;`},
	} {
		if st, _, page := get(t, admin, e.url, path); st != want.status || !strings.Contains(page, want.words) {
			t.Errorf("GET %s = %d, want %d saying %s:\n%s", path, st, want.status, want.words, page)
		}
	}
	// The overview plots the exposure snapshots: the newest one's counts
	// in the legends.
	var hist *api.ExposureHistory
	e.waitFor(30*time.Second, "an exposure snapshot of the 6 hosts", func() bool {
		hist, err = e.admin.ExposureHistory(ctx, time.Time{}, 0)
		e.ok(err)
		return len(hist.Points) > 0 && hist.Points[len(hist.Points)-1].Hosts == 6
	})
	_, _, page = get(t, admin, e.url, "/ui/")
	newest := hist.Points[len(hist.Points)-1]
	for _, want := range []string{`id="plot-severity"`, `id="plot-hosts"`, fmt.Sprintf("high: %d<", newest.Pairs["high"]), fmt.Sprintf("hosts past a deadline: %d<", newest.Overdue), fmt.Sprintf("hosts exposed: %d<", newest.Exposed)} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview's exposure plots have no %s (newest snapshot %+v)", want, newest)
		}
	}
	// The overview and a host link to the CVEs.
	if _, _, page := get(t, admin, e.url, "/ui/"); !strings.Contains(page, `id="top-cves"`) || !strings.Contains(page, `href="/ui/cves/`+top.CVE+`"`) {
		t.Errorf("the overview does not link %s", top.CVE)
	}
	d, err := e.admin.PlanCVE(ctx, top.CVE, 0, 1)
	e.ok(err)
	if _, _, page := get(t, admin, e.url, "/ui/hosts/"+d.Page[0].HostID); !strings.Contains(page, `id="host-cves"`) || !strings.Contains(page, `href="/ui/cves/`+top.CVE+`"`) {
		t.Errorf("host %s's page does not link %s", d.Page[0].Hostname, top.CVE)
	}
}

// cvePageRows is the rows of a CVE page.
const cvePageRows = 50

var styleRe = regexp.MustCompile(`(?s)<style>(.*?)</style>`)

// TestReportPage: /ui/report is stent fleet report's HTML over the live
// plan, for an admin and a viewer, with print rules, the policy version
// and a CSP that allows its own style and nothing else; bad parameters and
// a server without a plan are said clearly.
func TestReportPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and 4 simulated hosts")
	}
	e := startPlanEnv(t, 4, 0)
	ctx := context.Background()
	_, err := e.admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version":1,"rules":[{"id":"crit-7d","kind":"fix-within","severities":["critical"],"within":"7d"}]}`})
	e.ok(err)
	e.waitFor(30*time.Second, "the plan under policy version 1", func() bool {
		p, err := e.admin.Plan(ctx, api.PlanQuery{Limit: 1})
		e.ok(err)
		return p.PolicyVersion == 1 && p.Hosts == 4 && p.Failed == 0 && slices.ContainsFunc(p.Fleet, func(r policy.FleetRule) bool { return r.Rule == "crit-7d" })
	})
	wp, err := e.admin.FleetPlan(ctx, api.PlanQuery{})
	e.ok(err)
	admin, viewer := e.browser(), e.browser()
	login(t, admin, e.url, e.admin.Token)
	login(t, viewer, e.url, e.token("report-viewer", api.RoleViewer))
	for who, c := range map[string]*http.Client{"admin": admin, "viewer": viewer} {
		resp, err := c.Get(e.url + "/ui/report?days=30")
		e.ok(err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(b)
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Kernel patching compliance") || !strings.Contains(page, "under policy version 1") || !strings.Contains(page, "@media print") {
			t.Fatalf("%s: /ui/report = %d, want the report under policy version 1 with print rules:\n%.2000s", who, resp.StatusCode, page)
		}
		for _, h := range wp.Plan.Hosts {
			if !strings.Contains(page, `id="host-`+h.Hostname+`"`) {
				t.Errorf("%s: the report has no section for %s", who, h.Hostname)
			}
		}
		if !strings.Contains(page, `<td>crit-7d</td>`) || !strings.Contains(page, `id="exposure-chart"`) {
			t.Errorf("%s: the report has no crit-7d rule or no chart", who)
		}
		m := styleRe.FindStringSubmatch(page)
		sum := sha256.Sum256([]byte(m[1]))
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || strings.Contains(csp, "unsafe") || strings.Contains(csp, "script-src") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: report CSP %q, want default-src 'none' and its style's hash", who, csp)
		}
		if strings.Contains(page, "<script") {
			t.Errorf("%s: the report has a script", who)
		}
	}
	// One label's hosts.
	_, _, page := get(t, admin, e.url, "/ui/report?label=role%3Ddb")
	if n := strings.Count(page, `<section id="host-`); n != 2 {
		t.Errorf("/ui/report?label=role=db has %d hosts, want 2 (hosts 0 and 3)", n)
	}
	for path, words := range map[string]string{
		"/ui/report?days=0":      `days &#34;0&#34;: want a number of days from 1 to 3650`,
		"/ui/report?days=x":      `days &#34;x&#34;`,
		"/ui/report?label=nokey": `label: `,
		"/ui/report?host=nobody": `no host nobody in the plan`,
	} {
		st, _, page := get(t, admin, e.url, path)
		if (st != http.StatusBadRequest && st != http.StatusNotFound) || !strings.Contains(page, words) {
			t.Errorf("GET %s = %d, want 400/404 saying %s:\n%s", path, st, words, page)
		}
	}
	// More hosts than the page renders: 413, saying how to narrow it or
	// to write the whole report with stent fleet report; a selection
	// within the bound still renders.
	restore := web.SetMaxReportHosts(3)
	st, _, page := get(t, admin, e.url, "/ui/report")
	if st != http.StatusRequestEntityTooLarge || !regexp.MustCompile(`the report would cover \d+ hosts; this page renders at most 3:`).MatchString(page) ||
		!strings.Contains(page, "?label=KEY=VALUE") || !strings.Contains(page, "stent fleet report --format html") {
		t.Errorf("/ui/report of more than 3 hosts, at most 3 = %d, want 413 saying what to do:\n%s", st, page)
	}
	if st, _, page := get(t, admin, e.url, "/ui/report?label=role%3Ddb"); st != http.StatusOK || strings.Count(page, `<section id="host-`) != 2 {
		t.Errorf("/ui/report?label=role=db (2 hosts, at most 3) = %d with %d hosts, want 200 with 2", st, strings.Count(page, `<section id="host-`))
	}
	restore()

	// A server without feeds has no plan, and says why.
	bare := startEnv(t, 0, 0)
	bc := bare.browser()
	login(t, bc, bare.url, bare.admin.Token)
	if st, _, page := get(t, bc, bare.url, "/ui/report"); st != http.StatusServiceUnavailable || !strings.Contains(page, "no report: the server has no plan: no vulnerability database yet") {
		t.Errorf("/ui/report without feeds = %d, want 503 saying there is no plan:\n%s", st, page)
	}
}

// TestFeedsPage: each feed's source, state and records as the API says;
// a feed whose source turns to garbage shows that its previous copy is
// still in use, and why.
func TestFeedsPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server with feeds")
	}
	nvdDir := t.TempDir()
	good, err := os.ReadFile(filepath.Join("..", "..", "vuln", "testdata", "nvd", "page.json"))
	if err != nil {
		t.Fatal(err)
	}
	nvdFile := filepath.Join(nvdDir, "page.json")
	if err := os.WriteFile(nvdFile, good, 0o644); err != nil {
		t.Fatal(err)
	}
	feeds := append(slices.Clone(planFeeds[:3]), "nvd="+nvdDir)
	e := startEnvWith(t, 0, 0, envOpt{feeds: feeds})
	ctx := context.Background()
	var st *api.FeedsStatus
	e.waitFor(30*time.Second, "the feeds loaded", func() bool {
		st, err = e.admin.Feeds(ctx)
		e.ok(err)
		return st.Generation > 0 && len(st.Feeds) >= 4 && !slices.ContainsFunc(st.Feeds, func(f api.FeedStatus) bool { return !f.InUse })
	})
	c := e.browser()
	login(t, c, e.url, e.token("feeds-viewer", api.RoleViewer))
	code, _, page := get(t, c, e.url, "/ui/feeds")
	if code != http.StatusOK || strings.Count(page, `<tr class="feed`) != len(st.Feeds) || strings.Contains(page, "feed-error") {
		t.Fatalf("/ui/feeds = %d, want %d feeds and no error:\n%s", code, len(st.Feeds), page)
	}
	for _, f := range st.Feeds {
		if !strings.Contains(page, f.Location) || !strings.Contains(page, fmt.Sprintf(`<td class="num">%d`, f.Records)) {
			t.Errorf("/ui/feeds does not show %s with its %d records", f.Location, f.Records)
		}
	}
	if !strings.Contains(page, fmt.Sprintf("generation %d", st.Generation)) {
		t.Errorf("/ui/feeds does not show the database's generation %d", st.Generation)
	}

	// Garbage where the NVD feed was: the previous copy stays, and the
	// page says so and why.
	if err := os.WriteFile(nvdFile, []byte("<html>proxy error</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = e.admin.RefreshFeeds(ctx)
	e.ok(err)
	var nvd api.FeedStatus
	for _, f := range st.Feeds {
		if f.Kind == "nvd" {
			nvd = f
		}
	}
	if nvd.Error == "" || !nvd.InUse {
		t.Fatalf("nvd after garbage = %+v, want an error and the previous copy in use", nvd)
	}
	t.Logf("nvd's error: %s", nvd.Error)
	_, _, page = get(t, c, e.url, "/ui/feeds")
	if !strings.Contains(page, "previous feed still in use") || strings.Count(page, "feed-failing") != 1 || !strings.Contains(page, `id="feeds-failing">1 failing`) {
		t.Errorf("/ui/feeds after garbage does not say the previous NVD feed is still in use:\n%s", page)
	}
	if i := strings.Index(page, "previous feed still in use"); i < 0 || !strings.Contains(page[i:], firstWords(nvd.Error)) {
		t.Errorf("/ui/feeds does not say why: want %q", nvd.Error)
	}
}

// firstWords is the start of s up to its first character html/template
// would escape.
func firstWords(s string) string {
	if i := strings.IndexAny(s, `"'<>&+`); i >= 0 {
		return s[:i]
	}
	return s
}
