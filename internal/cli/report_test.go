package cli

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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

// A plan saved with stent plan --json renders, on its own, the very report
// stent report makes from the plan's inputs at the same --now.
func TestReportFromSavedPlan(t *testing.T) {
	inputs := append([]string{"--inventory", filepath.Join(policyData, "fleet"), "--policy", filepath.Join(policyData, "policy.json")}, feedArgs()...)
	code, saved, stderr := execStent(t, append([]string{"plan", "--json"}, inputs...)...)
	if code != 0 {
		t.Fatalf("stent plan --json = exit %d: %s", code, stderr)
	}
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planFile, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "csv", "html"} {
		for _, days := range []string{"90", "7"} {
			code, want, stderr := execStent(t, append([]string{"report", "--format", format, "--days", days}, inputs...)...)
			if code != 0 {
				t.Fatalf("stent report --format %s = exit %d: %s", format, code, stderr)
			}
			code, got, stderr := execStent(t, "report", "--format", format, "--days", days, "--plan", planFile)
			if code != 0 {
				t.Fatalf("stent report --plan --format %s = exit %d: %s", format, code, stderr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("--format %s --days %s: report from the saved plan differs (-from inputs +from plan):\n%s", format, days, diff)
			}
		}
	}
	// -o and --fail-on work the same from a plan.
	out := filepath.Join(dir, "report.html")
	code, _, stderr = execStent(t, "report", "--format", "html", "--plan", planFile, "-o", out, "--fail-on", "breached")
	if page, err := os.ReadFile(out); code != 3 || err != nil || !strings.Contains(string(page), "host-web2") {
		t.Errorf("report --plan -o --fail-on breached = exit %d (%s), page %v; want exit 3 and the page written", code, stderr, err)
	}

	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inv := filepath.Join(policyData, "fleet", "web2.json")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"an inventory", []string{"--plan", inv}, 2, inv + `:1:1: no "format": "stent-plan": not a stent plan (it looks like an inventory`},
		{"truncated", []string{"--plan", write("half.json", saved[:len(saved)/3])}, 2, "half.json:"},
		{"text plan", []string{"--plan", write("plan.txt", "Plan at 2026-11-23T00:00:00Z for 5 host(s)\n")}, 2, "plan.txt:1:1: invalid character 'P'"},
		{"older plan", []string{"--plan", write("v1.json", strings.Replace(saved, `"format": "stent-plan",`, "", 1))}, 2, `v1.json:1:1: no "format": "stent-plan"`},
		{"missing file", []string{"--plan", filepath.Join(dir, "nope.json")}, 1, "nope.json: no such file"},
		{"with feeds", append([]string{"--plan", planFile}, feedArgs()...), 2, "--feed cannot be given too"},
		{"with an inventory", []string{"--plan", planFile, "--inventory", inv}, 2, "--inventory cannot be given too"},
	}
	for _, tt := range tests {
		code, stdout, stderr := execStent(t, append([]string{"report", "--format", "html"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) || stdout != "" {
			t.Errorf("%s: stent report %v = exit %d, stdout %d bytes, stderr %q; want exit %d naming %q", tt.name, tt.args, code, len(stdout), stderr, tt.code, tt.want)
		}
	}
}
