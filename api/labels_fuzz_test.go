package api

import (
	"strings"
	"testing"
)

// FuzzParseLabels: "k=v" arguments (NUL-separated here) never panic the
// parser, and every label it returns is valid.
func FuzzParseLabels(f *testing.F) {
	f.Add("role=web\x00canary=true")
	f.Add("=x")
	f.Add("a=b=c")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseLabels(strings.Split(s, "\x00"))
		if err != nil {
			return
		}
		for k, v := range m {
			if !ValidLabel(k, v) {
				t.Errorf("ParseLabels(%q) returned invalid label %q=%q", s, k, v)
			}
		}
	})
}
