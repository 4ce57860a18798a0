package policy

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/vuln"
)

var update = flag.Bool("update", false, "rewrite golden files")

// realFleet plans the fleet under testdata/fleet against the real feeds
// (the Debian changelog of linux-image-6.1.0-56-amd64 and the kernel CNA
// sample) and testdata/policy.json.
func realFleet(t *testing.T) *FleetPlan {
	t.Helper()
	vt := filepath.Join("..", "vuln", "testdata")
	db, err := vuln.Load(t.Context(), []vuln.FeedSpec{
		{Kind: vuln.FeedDebianChangelog, Location: filepath.Join(vt, "linux-image-6.1.0-56-amd64.changelog.gz")},
		{Kind: vuln.FeedCNA, Location: filepath.Join(vt, "kernel-cna-sample.tar.gz")},
		{Kind: vuln.FeedOSV, Location: filepath.Join(vt, "osv")},
		{Kind: vuln.FeedNVD, Location: filepath.Join(vt, "nvd")},
		{Kind: vuln.FeedLivePatch, Location: filepath.Join(vt, "livepatch")},
	}, vuln.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pol, err := Parse("testdata/policy.json", f)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/fleet/*.json")
	var invs []*inventory.Inventory
	for _, p := range files {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		inv, err := inventory.Decode(p, fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		invs = append(invs, inv)
	}
	fp, err := Plan(Input{Inventories: invs, Names: files, DB: db, Policy: pol, Now: mustTime("2026-11-23T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

// The plan's decisions, in a form small enough to read in review: per host
// the counts, the actions and the standing under each rule.
func TestPlanGolden(t *testing.T) {
	fp := realFleet(t)
	type action struct {
		Kind, Summary, Note string
		Deadline            *time.Time `json:",omitempty"`
		CVEs                int
		FirstCVEs           []string
		Rules               []string
	}
	type rule struct {
		Rule, Status string
		Days         float64
		Deadline     *time.Time `json:",omitempty"`
		Counts       map[string]int
	}
	type host struct {
		Host       string
		Track      string
		Counts     map[vuln.State]int
		Actions    []action
		Compliance []rule
	}
	var out struct {
		Fleet []FleetRule
		Hosts []host
	}
	out.Fleet = fp.Fleet
	for _, h := range fp.Hosts {
		hs := host{Host: h.Hostname, Track: h.Track, Counts: h.Counts}
		for _, a := range h.Actions {
			first := a.CVEs
			if len(first) > 5 {
				first = first[:5]
			}
			hs.Actions = append(hs.Actions, action{a.Kind, a.Summary, a.Note, a.Deadline, len(a.CVEs), first, a.Rules})
		}
		for _, r := range h.Compliance {
			hs.Compliance = append(hs.Compliance, rule{r.Rule, r.Status, r.DaysExposed, r.Deadline, r.Counts})
		}
		out.Hosts = append(out.Hosts, hs)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.golden.json", append(b, '\n'))
}

func TestPlanIsDeterministic(t *testing.T) {
	a, err := json.Marshal(realFleet(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(realFleet(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two plans of the same inputs differ")
	}
}

func TestReportFormats(t *testing.T) {
	rep := BuildReport(realFleet(t), 90)
	if len(rep.Series) != 90 || rep.Series[89].Date != "2026-11-23" {
		t.Fatalf("series: %d points, last %+v", len(rep.Series), rep.Series[len(rep.Series)-1])
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Hosts) != 5 {
		t.Fatalf("report JSON: %v, %d hosts", err, len(back.Hosts))
	}
	var cs bytes.Buffer
	if err := rep.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// header + 5 hosts × 3 rules + 3 fleet rows
	if len(rows) != 1+15+3 || rows[0][0] != "host" || rows[len(rows)-1][0] != "*" {
		t.Errorf("csv: %d rows: %v", len(rows), rows[0])
	}
	for _, r := range rows[1:] {
		if r[1] == "urgent" && r[0] == "db1" && (r[2] != AtRisk || !strings.Contains(r[8], "exception until")) {
			t.Errorf("db1 urgent row = %v, want at-risk with the exception as evidence", r)
		}
	}
	var page bytes.Buffer
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{"<svg", `id="exposure-chart"`, "web1", "pci-dss-6.3.3", "breached", "class=\"area-high\""} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	for _, banned := range []string{"<script", "http://", "https://", "<link", "@import"} {
		if strings.Contains(html, banned) {
			t.Errorf("HTML is not self-contained: has %q", banned)
		}
	}
	golden(t, "report.golden.html", page.Bytes())
}

// The HTML report renders in a real browser: headless Chromium loads it and
// the DOM it builds has the fleet table, a row per host and the chart.
func TestReportHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no browser")
	}
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		testenv.Unavailable(t, "chromium is not installed (scripts/setup-deps.sh installs it)")
	}
	rep := BuildReport(realFleet(t), 90)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile")}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dom, err := exec.CommandContext(ctx, bin, append(args, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	s := string(dom)
	for _, want := range []string{`<table id="fleet">`, `id="host-web1"`, `id="host-alma1"`, `<svg`, `<polygon class="area-high"`, `Kernel patching compliance`} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	shot := filepath.Join(dir, "shot.png")
	if err := exec.CommandContext(ctx, bin, append(args, "--screenshot="+shot, "--window-size=1200,1600", "file://"+page)...).Run(); err != nil {
		t.Fatalf("chromium --screenshot: %v", err)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10000 {
		t.Errorf("screenshot: %v", err)
	}
}

// The HTML report says how many records a feed skipped as unreadable.
func TestReportNamesSkippedRecords(t *testing.T) {
	fp := realFleet(t)
	fp.Feeds = append([]vuln.FeedInfo(nil), fp.Feeds...)
	fp.Feeds[1].Skipped = 2
	var b strings.Builder
	if err := BuildReport(fp, 30).WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s (%d records, 2 skipped as unreadable", fp.Feeds[1].Kind, fp.Feeds[1].Records); !strings.Contains(b.String(), want) {
		t.Errorf("report HTML does not say %q", want)
	}
}
