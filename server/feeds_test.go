package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/feedtest"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/server"
)

var vulnData = filepath.Join("..", "vuln", "testdata")

// The server keeps real feeds from an HTTPS mirror and a local folder:
// loaded at start, listed by GET /v1/admin/feeds with records and times;
// a published bundle joins the automatic livepatch feed (its manifest),
// also after a restart; garbage from the mirror keeps the good copy in
// use and says so in the API, the metrics and the audit log.
func TestServerFeeds(t *testing.T) {
	mirror := feedtest.New(t)
	mirror.PutFile(t, "/debian/changelog.gz", filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"))
	mirror.PutFile(t, "/cna/vulns.tar.gz", filepath.Join(vulnData, "kernel-cna-sample.tar.gz"))
	changelogURL, cnaURL := mirror.URL+"/debian/changelog.gz", mirror.URL+"/cna/vulns.tar.gz"
	e := startEnv(t, envOpt{feedClient: mirror.Client(), feeds: []string{
		"debian-changelog=" + changelogURL, "cna=" + cnaURL, "osv=" + filepath.Join(vulnData, "osv"),
	}})
	ctx := context.Background()

	st := waitFeeds(t, e.admin, func(st *api.FeedsStatus) bool { return st.Generation > 0 && st.Feeds[1].InUse })
	if len(st.Feeds) != 4 {
		t.Fatalf("GET feeds lists %d feeds, want the 3 configured and the published bundles: %+v", len(st.Feeds), st.Feeds)
	}
	for _, f := range st.Feeds[:3] {
		if !f.InUse || f.Records == 0 || f.Error != "" || f.LastSuccess.IsZero() || f.LastChange.IsZero() || f.Digest == "" {
			t.Errorf("feed %s=%s = %+v, want loaded", f.Kind, f.Location, f)
		}
	}
	if f := st.Feeds[0]; f.FetchedAt == nil || f.Newest != "6.1.158-1" && f.Newest == "" {
		t.Errorf("changelog feed = %+v, want its download time and newest upload", f)
	}
	if f := st.Feeds[3]; !f.Automatic || f.Kind != "livepatch" || f.Location != server.PublishedFeedLocation || f.Records != 0 {
		t.Errorf("feed 4 = %+v, want the automatic livepatch feed, empty", f)
	}
	t.Logf("feeds: %d + %d + %d records, generation %d", st.Feeds[0].Records, st.Feeds[1].Records, st.Feeds[2].Records, st.Generation)
	db, gen := e.srv.Feeds().DB()
	if db == nil || gen != st.Generation || len(db.Vulns) == 0 || len(db.Patches) != 0 {
		t.Fatalf("Feeds().DB() = %v, generation %d, want the API's %d with CVEs and no patches", db, gen, st.Generation)
	}
	woken, cancel := e.srv.Feeds().Subscribe()
	defer cancel()

	// A published bundle is a live patch of the DB at once: its manifest.
	info := e.publish("lp_feed", 1, true, 256)
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("publishing a bundle woke no feed subscriber")
	}
	db, gen2 := e.srv.Feeds().DB()
	if gen2 <= gen || len(db.Patches) != 1 {
		t.Fatalf("after publishing: generation %d (was %d), patches %+v", gen2, gen, db.Patches)
	}
	if p := db.Patches[0]; p.Name != "lp_feed" || p.Kernel.Release != kernel || len(p.CVEs) != 1 || p.CVEs[0] != "CVE-2024-1086" || !p.Released.Equal(info.Published) {
		t.Errorf("published patch = %+v, want lp_feed for %s fixing CVE-2024-1086, released %s", p, kernel, info.Published)
	}
	if !db.Patches[0].Applies(kernel, "6.1.192-2") || db.Lookup("CVE-2024-1086") == nil {
		t.Errorf("the published patch does not apply to %s or its CVE is unknown to the DB", kernel)
	}

	// Garbage from the mirror: refused, the good copy stays in use.
	mirror.Put("/cna/vulns.tar.gz", []byte("<html><body>rate limited</body></html>"))
	st2, err := e.admin.RefreshFeeds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cna := st2.Feeds[1]
	if cna.Error == "" || !strings.Contains(cna.Error, "refusing the download") || !cna.InUse || cna.Records != st.Feeds[1].Records || cna.Failures != 1 || cna.LastSuccess != st.Feeds[1].LastSuccess {
		t.Errorf("cna feed after garbage = %+v, want the error, the previous %d records in use", cna, st.Feeds[1].Records)
	}
	if st2.Generation != gen2 {
		t.Errorf("generation after garbage = %d, want %d", st2.Generation, gen2)
	}
	if full, nm := mirror.Served("/debian/changelog.gz"); full != 1 || nm != 1 {
		t.Errorf("changelog served %d times in full and %d times 304, want once each", full, nm)
	}
	metrics := scrape(t, e)
	for _, want := range []string{
		`stent_server_feed_failures_total{kind="cna",location="` + cnaURL + `"} 1`,
		`stent_server_feed_up{kind="cna",location="` + cnaURL + `"} 0`,
		`stent_server_feed_up{kind="debian-changelog",location="` + changelogURL + `"} 1`,
		`stent_server_feed_records{kind="livepatch",location="` + server.PublishedFeedLocation + `"} 1`,
		`stent_server_feed_database_ok 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	m := regexp.MustCompile(`stent_server_feed_last_success_timestamp_seconds\{kind="cna",location="[^"]+"\} (\S+)`).FindStringSubmatch(metrics)
	if ts, _ := strconv.ParseFloat(m[len(m)-1], 64); m == nil || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("cna last success metric = %v, want about now", m)
	}
	fails, err := e.admin.Audit(ctx, api.AuditQuery{Action: "feed.fail"})
	if err != nil || len(fails) != 1 || fails[0].Target != "cna="+cnaURL || !strings.Contains(string(fails[0].Detail), "refusing the download") {
		t.Errorf("feed.fail audit entries = %+v, %v; want one for the cna feed", fails, err)
	}
	updates, err := e.admin.Audit(ctx, api.AuditQuery{Action: "feed.update"})
	if err != nil || len(updates) != 3 {
		t.Errorf("feed.update audit entries = %+v, %v; want one per configured feed", updates, err)
	}
	// The same garbage again is not audited again.
	if _, err := e.admin.RefreshFeeds(ctx); err != nil {
		t.Fatal(err)
	}
	if fails, _ := e.admin.Audit(ctx, api.AuditQuery{Action: "feed.fail"}); len(fails) != 1 {
		t.Errorf("%d feed.fail entries after the same failure twice, want 1", len(fails))
	}

	// Viewers read the feeds, only operators refresh them.
	tv, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "v", Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	viewer := e.client(tv.Secret)
	if _, err := viewer.Feeds(ctx); err != nil {
		t.Errorf("viewer GET feeds = %v", err)
	}
	if _, err := viewer.RefreshFeeds(ctx); !api.IsStatus(err, http.StatusForbidden) {
		t.Errorf("viewer POST feeds/refresh = %v, want 403", err)
	}

	// After a restart the published bundle is read back from the store.
	mirror.PutFile(t, "/cna/vulns.tar.gz", filepath.Join(vulnData, "kernel-cna-sample.tar.gz"))
	e.restart(0)
	st3 := waitFeeds(t, e.admin, func(st *api.FeedsStatus) bool { return st.Generation > 0 && st.Feeds[3].Records == 1 })
	db, _ = e.srv.Feeds().DB()
	if len(db.Patches) != 1 || db.Patches[0].Name != "lp_feed" || st3.Feeds[1].Error != "" {
		t.Errorf("after a restart: patches %+v, cna feed %+v", db.Patches, st3.Feeds[1])
	}
}

// A --feed that does not parse stops the server before it starts.
func TestServerFeedConfigRefused(t *testing.T) {
	for _, tc := range []struct{ feed, want string }{
		{"cve=/tmp/x", `unknown kind "cve"`},
		{"cna", "want KIND=PATH or KIND=https://URL"},
		{"cna=http://mirror.example/vulns.tar.gz", "only https URLs are fetched"},
	} {
		cfg := server.DefaultConfig()
		cfg.DataDir, cfg.AcceptAnySigner, cfg.Feeds = t.TempDir(), true, []string{tc.feed}
		_, err := server.New(context.Background(), cfg, server.Options{Log: testLog(t)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--feed") {
			t.Errorf("server.New(--feed %s) = %v, want an error naming --feed and %q", tc.feed, err, tc.want)
		}
	}
}

// waitFeeds polls GET /v1/admin/feeds until ok.
func waitFeeds(t *testing.T, c *api.Client, ok func(*api.FeedsStatus) bool) *api.FeedsStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Feeds(context.Background())
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("feeds not ready: %+v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scrape(t *testing.T, e *env) string {
	t.Helper()
	resp, err := e.admin.HTTP.Get(e.url + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The plan the server's feeds make: a bundle published for web2's exact
// kernel, fixing its urgent CVE, makes "apply the live patch" its first
// action (as stent plan --feed livepatch= does with the file).
func TestServerPublishedBundlePlans(t *testing.T) {
	e := startEnv(t, envOpt{feeds: []string{
		"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
		"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
		"osv=" + filepath.Join(vulnData, "osv"),
		"nvd=" + filepath.Join(vulnData, "nvd"),
	}})
	waitFeeds(t, e.admin, func(st *api.FeedsStatus) bool { return st.Generation > 0 })
	f, err := os.Open(filepath.Join("..", "policy", "testdata", "fleet", "web2.json"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Decode("web2.json", f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	plan := func() policy.HostPlan {
		t.Helper()
		db, _ := e.srv.Feeds().DB()
		fp, err := policy.Plan(policy.Input{Inventories: []*inventory.Inventory{inv}, DB: db, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return fp.Hosts[0]
	}
	var kinds []string
	for _, a := range plan().Actions {
		kinds = append(kinds, a.Kind)
	}
	if !slices.Contains(kinds, policy.ActEmergencyReboot) || slices.Contains(kinds, policy.ActApplyLivePatch) {
		t.Fatalf("web2's actions before publishing = %v, want an emergency reboot and no live patch", kinds)
	}
	m := &bundle.Manifest{
		FormatVersion: bundle.FormatVersion, Name: "lp_web2", Level: 1, Replace: true,
		Kernel:      bundle.Kernel{Release: inv.Kernel.Release, PackageVersion: inv.Kernel.PackageVersion},
		CVEs:        []string{"CVE-2026-99228"},
		Functions:   []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Description: "fix CVE-2026-99228", Created: now.Add(-time.Hour),
	}
	var buf bytes.Buffer
	if err := bundle.Create(&buf, m, []byte("\x7fELF module of the test, never loaded"), e.key); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.PublishBundle(context.Background(), buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if a := plan().Actions[0]; a.Kind != policy.ActApplyLivePatch || a.LivePatch != "lp_web2" {
		t.Errorf("web2's first action after publishing lp_web2 = %s %q (%s), want %s lp_web2", a.Kind, a.LivePatch, a.Summary, policy.ActApplyLivePatch)
	}
}
