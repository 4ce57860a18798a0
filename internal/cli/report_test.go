package cli

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportCommand(t *testing.T) {
	base := append([]string{"report", "--inventory", filepath.Join(policyData, "fleet"), "--policy", filepath.Join(policyData, "policy.json")}, feedArgs()...)
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, stderr := execStent(t, append(base, "--format", "html", "-o", out)...)
	if code != 0 {
		t.Fatalf("stent report --format html = exit %d: %s", code, stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(page), "<svg") || !strings.Contains(string(page), "host-web2") {
		t.Errorf("HTML report: %v, %d bytes", err, len(page))
	}
	code, stdout, stderr := execStent(t, append(base, "--format", "csv")...)
	if code != 0 {
		t.Fatalf("stent report --format csv = exit %d: %s", code, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil || len(rows) != 19 {
		t.Errorf("csv: %v, %d rows", err, len(rows))
	}
	code, stdout, _ = execStent(t, append(base, "--format", "json")...)
	if code != 0 || !strings.Contains(stdout, `"exposure_by_severity"`) {
		t.Errorf("json report: exit %d", code)
	}
	// --fail-on: the fleet has breached hosts.
	code, _, stderr = execStent(t, append(base, "--format", "json", "--fail-on", "breached")...)
	if code != 3 || !strings.Contains(stderr, "breached") {
		t.Errorf("--fail-on breached = exit %d, %q; want 3", code, stderr)
	}
	code, _, stderr = execStent(t, append(base, "--format", "pdf")...)
	if code != 2 || !strings.Contains(stderr, "want json, csv or html") {
		t.Errorf("--format pdf = exit %d, %q", code, stderr)
	}
}
