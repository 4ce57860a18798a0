package vuln

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseLivePatches: live patch manifests never panic the parser.
func FuzzParseLivePatches(f *testing.F) {
	files, _ := filepath.Glob("testdata/livepatch/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`[{"name":"x","cves":["CVE-2024-1"],"kernel":{"release":"6.1.0-54-amd64"}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseLivePatches("lp.json", data)
	})
}

// FuzzParseCVSS: a vector parses to a score within 0-10 or is refused.
func FuzzParseCVSS(f *testing.F) {
	for _, s := range []string{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.0/AV:L/AC:H/PR:H/UI:R/S:C/C:N/I:N/A:N",
		"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
		"CVSS:3.1/AV:N",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, vector string) {
		s, err := ParseCVSS(vector)
		if err == nil && (s.Base < 0 || s.Base > 10) {
			t.Errorf("ParseCVSS(%q).Base = %v, want 0 to 10", vector, s.Base)
		}
	})
}

// FuzzParseKernelVersion: what parses prints back to itself and orders
// equal to itself.
func FuzzParseKernelVersion(f *testing.F) {
	for _, s := range []string{"6.1", "6.1.192", "6.13-rc3", "2.6.32.30", "2.6.33-rc1", "0", "6.1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseKernelVersion(s)
		if err != nil {
			return
		}
		w, err := ParseKernelVersion(v.String())
		if err != nil || w != v || w.Compare(v) != 0 {
			t.Errorf("ParseKernelVersion(%q) = %+v, printed %q, parsed back %+v, %v", s, v, v.String(), w, err)
		}
	})
}
