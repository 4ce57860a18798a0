package policy

import (
	"bytes"
	"os"
	"testing"
)

// FuzzParse: a policy file never panics the parser.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/policy.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"rules":[{"id":"r","max_age":"30d","min_cvss":7}]}`))
	f.Add([]byte(`{"rules":[],"exceptions":[{"cve":"CVE-2024-1","hosts":["*"],"until":"2026-01-01"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		Parse("policy.json", bytes.NewReader(data))
	})
}
