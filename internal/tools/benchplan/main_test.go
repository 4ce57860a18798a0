package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchplanSmall(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-hosts", "200", "-cves", "500", "-uploads", "20", "-kernels", "6"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "hosts 200, CVEs in database 500") || !strings.Contains(out.String(), "exposure + plan") {
		t.Errorf("output:\n%s", out.String())
	}
}
