package vuln

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cnaSample = "testdata/kernel-cna-sample.tar.gz"

func loadCNASample(t testing.TB) []*CNARecord {
	t.Helper()
	pf, err := ParseFeed(FeedCNA, cnaSample)
	if err != nil {
		t.Fatalf("ParseFeed(cna, %s) = %v", cnaSample, err)
	}
	return pf.cna
}

// The sample of 300 real kernel CNA records parses completely.
func TestParseCNASample(t *testing.T) {
	recs := loadCNASample(t)
	if len(recs) != 300 {
		t.Fatalf("%d records, want 300", len(recs))
	}
	scored, dyads := 0, 0
	for _, r := range recs {
		if r.FixCommit == "" {
			t.Errorf("%s: no fix commit", r.ID)
		}
		if r.Upstream == nil {
			t.Errorf("%s: no upstream ranges", r.ID)
		}
		if r.DyadRanges != nil {
			dyads++
		}
		for _, s := range r.Scores {
			if s.Source == "cna" && s.Version == "3.1" {
				scored++
				break
			}
		}
	}
	if scored != 136 || dyads != 300 {
		t.Errorf("%d records scored, %d with a dyad; want 136 and 300", scored, dyads)
	}
}

// The .dyad file and the JSON record's version ranges are two writings of
// the same facts: they must agree on every version of every branch the
// record names.
func TestCNADyadAgreesWithJSON(t *testing.T) {
	recs := loadCNASample(t)
	checked := 0
	for _, r := range recs {
		if r.DyadRanges == nil || r.JSONRanges == nil {
			continue
		}
		for _, v := range probeVersions(r.DyadRanges, r.JSONRanges) {
			ds, dfix := r.DyadRanges.Status(v)
			js, jfix := r.JSONRanges.Status(v)
			checked++
			if ds != js || dfix != jfix {
				t.Errorf("%s at %s: dyad says %v (fix %v), json says %v (fix %v)", r.ID, v, ds, dfix, js, jfix)
			}
		}
	}
	if checked < 10000 {
		t.Errorf("only %d probes", checked)
	}
}

// probeVersions returns versions around every version the ranges name.
func probeVersions(us ...*Upstream) []KernelVersion {
	var out []KernelVersion
	for _, u := range us {
		for _, list := range [][]KernelVersion{u.Introduced, u.Fixed} {
			for _, v := range list {
				if v.IsZero() {
					continue
				}
				out = append(out, v, KernelVersion{Major: v.Major, Minor: v.Minor, RC: 1})
				if v.Patch > 0 {
					out = append(out, KernelVersion{Major: v.Major, Minor: v.Minor, Patch: v.Patch - 1})
				}
				out = append(out, KernelVersion{Major: v.Major, Minor: v.Minor, Patch: v.Patch + 1},
					KernelVersion{Major: v.Major, Minor: v.Minor, Patch: v.Patch + 500},
					KernelVersion{Major: v.Major, Minor: v.Minor + 1, Patch: 3})
			}
		}
	}
	return append(out, MustKernelVersion("6.1.192"), MustKernelVersion("5.10.240"), MustKernelVersion("3.10"))
}

func TestUpstreamStatus(t *testing.T) {
	data, err := os.ReadFile("testdata/cna/cve/published/2024/CVE-2024-14027.dyad")
	if err != nil {
		t.Fatal(err)
	}
	// 6.6.51 (backport) introduced it, 6.6.133 fixed it; mainline 6.11
	// introduced it, 6.12.77 and 6.13 fixed it; 6.10.10 got it and no fix.
	up, err := ParseDyad("x.dyad", data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		v    string
		want UpstreamStatus
		fix  string
	}{
		{"6.1.192", UpstreamNotAffected, ""},
		{"6.6.50", UpstreamNotAffected, ""},
		{"6.6.51", UpstreamAffected, "6.6.133"},
		{"6.6.132", UpstreamAffected, "6.6.133"},
		{"6.6.133", UpstreamFixed, "6.6.133"},
		{"6.7.4", UpstreamNotAffected, ""},
		{"6.10.9", UpstreamNotAffected, ""},
		{"6.10.14", UpstreamAffected, ""},
		{"6.11-rc5", UpstreamNotAffected, ""},
		{"6.11", UpstreamAffected, ""},
		{"6.11.11", UpstreamAffected, ""},
		{"6.12.5", UpstreamAffected, "6.12.77"},
		{"6.12.77", UpstreamFixed, "6.12.77"},
		{"6.13-rc2", UpstreamAffected, "6.13"},
		{"6.13", UpstreamFixed, "6.13"},
		{"6.18.2", UpstreamNotAffected, ""}, // fixed in mainline before 6.18 branched
	}
	for _, tt := range tests {
		got, fix := up.Status(MustKernelVersion(tt.v))
		if got != tt.want || fix.String() != tt.fix {
			t.Errorf("Status(%s) = %v, %v; want %v, %q", tt.v, got, fix, tt.want, tt.fix)
		}
	}
}

func TestParseCNAFolder(t *testing.T) {
	pf, err := ParseFeed(FeedCNA, "testdata/cna")
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.cna) != 3 {
		t.Fatalf("%d records, want 3", len(pf.cna))
	}
	r := pf.cna[1] // CVE-2024-26586, scored in its .cvss file and its JSON
	if r.ID != "CVE-2024-26586" || len(r.Scores) == 0 || r.Scores[0].Base != 7.8 {
		t.Errorf("record %s scores %+v, want CVE-2024-26586 scored 7.8", r.ID, r.Scores)
	}
}

func TestParseCNAErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/cna/cve/published/2024/CVE-2024-14027.json")
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	tests := []struct {
		name, json, want string
	}{
		{"no affected", strings.Replace(s, `"affected"`, `"unaffectedx"`, 1), "containers.cna.affected: missing required field"},
		{"no id", strings.Replace(s, `"cveId": "CVE-2024-14027"`, `"cveIdx": "x"`, 1), "cveMetadata.cveId: missing required field"},
		{"bad version", strings.Replace(s, `"6.6.133",`, `"6.6.x",`, 1), "containers.cna.affected[0].versions[4].lessThan"},
		{"syntax", strings.Replace(s, `"title"`, `"title" "x"`, 1), "CVE-2024-14027.json:146:19: invalid character"},
		{"wrong type", strings.Replace(s, `"defaultStatus": "unaffected"`, `"defaultStatus": 3`, 1), "containers.cna.affected.defaultStatus: want string"},
		{"bad state", strings.Replace(s, `"PUBLISHED"`, `"DRAFT"`, 1), "cveMetadata.state: unknown state"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		p := filepath.Join(dir, "CVE-2024-14027.json")
		if err := os.WriteFile(p, []byte(tt.json), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ParseFeed(FeedCNA, dir)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: ParseFeed = %v, want an error naming %s and containing %q", tt.name, err, p, tt.want)
		} else if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v is not ErrMalformed", tt.name, err)
		}
	}
	// A .dyad without its record skips it; a bad dyad line, .cvss or .sha1
	// keeps the record without what it could not read; each is named.
	for _, tt := range []struct {
		file, data, want string
		skipped          int
	}{
		{"CVE-2024-1.dyad", "6.1:a:6.2:b\n", "no CVE-2024-1.json beside it", 1},
		{"CVE-2024-14027.dyad", "# c\n6.1:a:6.2\n", "CVE-2024-14027.dyad:2: want 4 colon-separated fields", 0},
		{"CVE-2024-14027.dyad", "6.1:a:6.x:b\n", "CVE-2024-14027.dyad:1: fixed_version", 0},
		{"CVE-2024-14027.cvss", "org CVSS:3.1/AV:X\n", "CVE-2024-14027.cvss:1: vector", 0},
		{"CVE-2024-14027.sha1", "zz\n", "CVE-2024-14027.sha1:1:", 0},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "CVE-2024-14027.json"), good, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.data), 0o644); err != nil {
			t.Fatal(err)
		}
		pf, err := ParseFeed(FeedCNA, dir)
		if err != nil {
			t.Errorf("%s: ParseFeed = %v, want the record read and a warning", tt.file, err)
			continue
		}
		if len(pf.cna) != 1 || pf.skipped != tt.skipped || len(pf.warnings) != 1 || !strings.Contains(pf.warnings[0], tt.want) {
			t.Errorf("%s: %d records, %d skipped, warnings %q; want 1, %d and one containing %q", tt.file, len(pf.cna), pf.skipped, pf.warnings, tt.skipped, tt.want)
		}
	}
	// An empty folder is refused: it would make every host look clean.
	if _, err := ParseFeed(FeedCNA, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no cna records") {
		t.Errorf("empty folder: ParseFeed = %v, want no cna records", err)
	}
}

func FuzzParseCVERecord(f *testing.F) {
	good, err := os.ReadFile("testdata/cna/cve/published/2024/CVE-2024-14027.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"dataType":"CVE_RECORD","cveMetadata":{"cveId":"CVE-2024-1","state":"PUBLISHED"},"containers":{"cna":{"affected":[{"defaultStatus":"affected","versions":[{"version":"0","lessThan":"6.1","status":"unaffected","versionType":"semver"}]}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseCVERecord("fuzz.json", data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if !cveIDPattern.MatchString(r.ID) {
			t.Fatalf("accepted id %q", r.ID)
		}
		if r.Upstream != nil {
			r.Upstream.Status(MustKernelVersion("6.1.192"))
		}
	})
}

func FuzzParseDyad(f *testing.F) {
	f.Add([]byte("# c\n6.6.51:a:6.6.133:b\n6.10.10:c:0:0\n0:0:6.1:d\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		up, err := ParseDyad("fuzz.dyad", data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		for _, v := range probeVersions(up) {
			up.Status(v)
		}
	})
}
