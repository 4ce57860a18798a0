package vuln

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseOSV(t *testing.T) {
	pf, err := ParseFeed(FeedOSV, "testdata/osv")
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.osv) != 3 {
		t.Fatalf("%d records, want 3", len(pf.osv))
	}
	alsa := pf.osv[0]
	if alsa.ID != "ALSA-2026:0001" || strings.Join(alsa.CVEs, ",") != "CVE-2026-10001,CVE-2026-10002" {
		t.Errorf("record 0 = %s %v", alsa.ID, alsa.CVEs)
	}
	if len(alsa.Scores) != 1 || alsa.Scores[0].Base != 9.8 {
		t.Errorf("record 0 scores = %+v, want 9.8", alsa.Scores)
	}
	if got := alsa.Affected[0].Severity; got != "Important" {
		t.Errorf("ecosystem severity = %q, want Important", got)
	}
}

func TestOSVExposureRPM(t *testing.T) {
	db, err := buildFrom(t, FeedSpec{FeedOSV, "testdata/osv"})
	if err != nil {
		t.Fatal(err)
	}
	host := Host{Distro: "almalinux", Release: "9.3", Package: "kernel", Scheme: SchemeRPM, osvName: "AlmaLinux",
		Running: Build{Release: "5.14.0-362.8.1.el9_3.x86_64", Version: "5.14.0-362.8.1.el9_3"}}
	host.Newest = host.Running
	e, err := db.Evaluate(host)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]State{}
	for _, f := range e.Findings {
		got[f.CVE] = f.State
	}
	want := map[string]State{
		"CVE-2026-10001": UpdateNeeded, "CVE-2026-10002": UpdateNeeded, "CVE-2026-10003": NoFix,
		// A Debian advisory says nothing about AlmaLinux, and upstream
		// ranges do not apply to an enterprise kernel: unknown, not clean.
		"CVE-2026-99228": Unknown,
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("%s: state %q, want %q", id, got[id], st)
		}
	}
	if f := e.Findings[0]; f.CVE != "CVE-2026-10001" || f.FixedIn != "5.14.0-427.13.1.el9_4" || f.Severity.Level != LevelCritical {
		t.Errorf("first finding = %+v", f)
	}
	// After the update: fixed.
	host.Running.Version = "5.14.0-427.13.1.el9_4"
	host.Newest = host.Running
	e, err = db.Evaluate(host)
	if err != nil {
		t.Fatal(err)
	}
	if e.Counts[FixedRunning] != 2 || e.Counts[NoFix] != 1 {
		t.Errorf("counts after update = %v, want 2 fixed-running, 1 no-fix", e.Counts)
	}
}

func TestParseOSVErrors(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"no id", `{"modified":"2026-01-01T00:00:00Z"}`, "x.json: id: missing required field"},
		{"no modified", `{"id":"A"}`, "x.json: modified: missing required field"},
		{"no ecosystem", `{"id":"A","modified":"2026-01-01T00:00:00Z","affected":[{"package":{"name":"linux"}}]}`, "affected[0].package.ecosystem: missing required field"},
		{"two keys", `{"id":"A","modified":"2026-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"linux"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0","fixed":"1"}]}]}]}`, "affected[0].ranges[0].events[0]: want exactly one"},
		{"array index", `[{"id":"A","modified":"2026-01-01T00:00:00Z"},{"id":"B"}]`, "x.json: [1].modified: missing required field"},
		{"syntax", "{\"id\":\n\"A\",,}", "x.json:2:6: invalid character"},
		{"bad cvss", `{"id":"A","modified":"2026-01-01T00:00:00Z","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:Q"}]}`, "severity[0].score: cvss vector"},
	}
	for _, tt := range tests {
		_, err := ParseOSV("x.json", []byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseOSV = %v, want a malformed-feed error containing %q", tt.name, err, tt.want)
		}
	}
	// An unparsable distribution version is refused at load, with its place.
	dir := t.TempDir()
	bad := `{"id":"A","modified":"2026-01-01T00:00:00Z","aliases":["CVE-2026-1"],"affected":[{"package":{"ecosystem":"Debian:12","name":"linux"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"not a version"}]}]}]}`
	if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := buildFrom(t, FeedSpec{FeedOSV, dir})
	if err == nil || !strings.Contains(err.Error(), "a.json: affected[0].ranges[0].events[1].fixed: debian version") {
		t.Errorf("Load(bad version) = %v", err)
	}
}

func TestParseNVD(t *testing.T) {
	data, err := os.ReadFile("testdata/nvd/page.json")
	if err != nil {
		t.Fatal(err)
	}
	page, err := ParseNVD("page.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 2 || page.TotalResults != 2 {
		t.Fatalf("page = %+v", page)
	}
	r := page.Records[0]
	if r.ID != "CVE-2026-99228" || len(r.Scores) != 2 || r.Scores[0].Source != "nvd" || r.Scores[0].Base != 7.8 || r.Scores[1].Version != "4.0" {
		t.Errorf("record 0 = %+v", r)
	}
	for _, tt := range []struct{ data, want string }{
		{`{"vulnerabilities":[]}`, "format: missing required field"},
		{`{"format":"NVD_CVE","vulnerabilities":[{"cve":{"published":"2026-01-01"}}]}`, "vulnerabilities[0].cve.id: missing required field"},
		{`{"format":"NVD_CVE","vulnerabilities":[{"cve":{"id":"CVE-2026-1000","metrics":{"cvssMetricV31":[{"cvssData":{}}]}}}]}`, "metrics.cvssMetricV31[0].cvssData.vectorString: missing required field"},
		{`{"format":"NVD_CVE"}`, "vulnerabilities: missing required field"},
	} {
		if _, err := ParseNVD("n.json", []byte(tt.data)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseNVD(%s) = %v, want %q", tt.data, err, tt.want)
		}
	}
}

func FuzzParseOSV(f *testing.F) {
	for _, p := range []string{"testdata/osv/ALSA-2026-0001.json", "testdata/osv/DEBIAN-CVE-2026-99228.json"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ParseOSV("fuzz.json", data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		b := newBuilder()
		_ = b.add(&parsedFeed{kind: FeedOSV, osv: recs})
		_, _ = b.build()
	})
}

func FuzzParseNVD(f *testing.F) {
	data, err := os.ReadFile("testdata/nvd/page.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseNVD("fuzz.json", data); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
	})
}
