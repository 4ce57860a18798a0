package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// reportBytes renders rep in every format.
func reportBytes(t *testing.T, rep *Report) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for format, write := range map[string]func(*bytes.Buffer) error{
		"json": func(b *bytes.Buffer) error { return rep.WriteJSON(b) },
		"csv":  func(b *bytes.Buffer) error { return rep.WriteCSV(b) },
		"html": func(b *bytes.Buffer) error { return rep.WriteHTML(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatalf("write %s: %v", format, err)
		}
		out[format] = b.Bytes()
	}
	return out
}

// A plan saved as JSON and read back renders the very report the plan
// itself renders, in every format and for any history length, and writes
// back as the same JSON.
func TestDecodePlanRendersTheSameReport(t *testing.T) {
	fp := realFleet(t)
	saved, err := json.MarshalIndent(fp, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodePlan("plan.json", bytes.NewReader(saved))
	if err != nil {
		t.Fatalf("DecodePlan(plan of the test fleet) = %v", err)
	}
	again, err := json.MarshalIndent(back, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(saved), string(again)); diff != "" {
		t.Errorf("plan JSON after a round trip differs (-saved +decoded):\n%s", diff)
	}
	for _, days := range []int{1, 90, 400} {
		want := reportBytes(t, BuildReport(fp, days))
		got := reportBytes(t, BuildReport(back, days))
		for _, format := range []string{"json", "csv", "html"} {
			if diff := cmp.Diff(string(want[format]), string(got[format])); diff != "" {
				t.Errorf("--days %d --format %s: report from the saved plan differs (-direct +saved):\n%s", days, format, diff)
			}
		}
	}
	// The history of fixes the running kernels carry is in the plan: the
	// series is not the same without it.
	var total int
	for _, h := range back.Hosts {
		for _, r := range h.Resolved {
			total += r.CVEs
		}
	}
	if total == 0 {
		t.Error("no host of the saved plan carries resolved CVEs; the report's history would lose them")
	}
	// The golden report is the one the saved plan renders too.
	golden(t, "report.golden.html", reportBytes(t, BuildReport(back, 90))["html"])
}

func TestDecodePlanRefuses(t *testing.T) {
	fp := realFleet(t)
	saved, err := json.MarshalIndent(fp, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := os.ReadFile(filepath.Join("testdata", "fleet", "web1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep bytes.Buffer
	if err := BuildReport(fp, 3).WriteJSON(&rep); err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(string(saved), old) {
			t.Fatalf("the saved plan lacks %q", old)
		}
		return strings.Replace(string(saved), old, new, 1)
	}
	v1 := edit(`"format": "stent-plan",
  "schema_version": 2,`, `"schema_version": 1,`)
	tests := []struct {
		name, data string
		want       string
		notPlan    bool // errors.Is(err, ErrNotPlan)
	}{
		{"empty", "", "plan.json:1:1: unexpected end of JSON input", true},
		{"not JSON", "plan: yes\n", "plan.json:1:1: invalid character 'p'", true},
		{"truncated", string(saved[:len(saved)/2]), "plan.json:", true},
		{"array", "\n  []", "plan.json:2:3: a JSON array, not an object", true},
		{"inventory", string(inv), `plan.json:1:1: no "format": "stent-plan": not a stent plan (it looks like an inventory`, true},
		{"report", rep.String(), `plan.json:1:1: no "format": "stent-plan": not a stent plan (it looks like a report`, true},
		{"plan of schema 1", v1, "it looks like a plan of schema_version 1, written by an older stent", true},
		{"other format", edit(`"format": "stent-plan"`, `"format": "stent-report"`), `plan.json:2:3: format "stent-report", want "stent-plan"`, true},
		{"format not a string", edit(`"format": "stent-plan"`, `"format": 2`), `plan.json:2:3: format: want the string "stent-plan"`, true},
		{"newer schema", edit(`"schema_version": 2`, `"schema_version": 3`), "plan.json:3:3: schema_version 3, this stent reads 2", true},
		{"no schema", edit(`"schema_version": 2,`, ``), "schema_version -1, this stent reads 2", true},
		{"unknown field", edit(`"hostname": "db1",`, `"hostname": "db1", "color": "red",`), `: hosts[2].color: unknown field`, true},
		{"unknown field in a map value", edit(`"generated_at"`, `"extra": {"a": {"b": 1}}, "generated_at"`), `plan.json:4:3: extra: unknown field`, true},
		{"wrong type", edit(`"hostname": "db1"`, `"hostname": 7`), `hosts.hostname: json: cannot unmarshal number`, false},
		{"no time", edit(`"generated_at": "2026-11-23T00:00:00Z"`, `"generated_at": "0001-01-01T00:00:00Z"`), "generated_at: missing required field", false},
		{"no policy", edit(`"policy": {`, `"policy": null, "x_policy": {`), "x_policy: unknown field", true},
		{"bad status", edit(`"status": "breached"`, `"status": "fine"`), `status "fine": want compliant`, false},
		{"no hostname", edit(`"hostname": "db1"`, `"hostname": ""`), "hosts[2].hostname: missing required field", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := DecodePlan("plan.json", strings.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DecodePlan(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
			if fp != nil {
				t.Errorf("DecodePlan(%s) returned a plan with its error", tt.name)
			}
			if errors.Is(err, ErrNotPlan) != tt.notPlan {
				t.Errorf("DecodePlan(%s): errors.Is(err, ErrNotPlan) = %v, want %v", tt.name, !tt.notPlan, tt.notPlan)
			}
		})
	}
}

func FuzzDecodePlan(f *testing.F) {
	f.Add([]byte(`{"format":"stent-plan","schema_version":2,"generated_at":"2026-11-23T00:00:00Z","policy":{"presets":[],"rules":[]},"hosts":[{"hostname":"a","kernel":{"release":"6.1.0-1-amd64","boot_time":"2026-11-01T00:00:00Z"},"compliance":[]}]}`))
	f.Add([]byte(`{"format":"stent-plan","schema_version":2,"x":[{"y":{}}]}`))
	f.Add([]byte(`[1,2`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fp, err := DecodePlan("fuzz.json", bytes.NewReader(data))
		if err == nil {
			BuildReport(fp, 5)
		}
	})
}

// A report built a host at a time (ReportBuilder, hosts in any order) is
// BuildReport's of the whole plan, in every format: the server's live
// plan of any size is reported that way.
func TestReportBuilder(t *testing.T) {
	fp := realFleet(t)
	if len(fp.Hosts) < 3 {
		t.Fatalf("the test fleet has %d hosts; want a few", len(fp.Hosts))
	}
	for _, days := range []int{0, 1, 90} {
		want := reportBytes(t, BuildReport(fp, days))
		b := NewReportBuilder(fp.Policy, fp.Feeds, fp.GeneratedAt, days)
		for i := len(fp.Hosts) - 1; i >= 0; i-- { // reversed: the builder sorts
			b.Add(&fp.Hosts[i])
		}
		if b.Hosts() != len(fp.Hosts) {
			t.Errorf("Hosts() = %d, want %d", b.Hosts(), len(fp.Hosts))
		}
		got := reportBytes(t, b.Report())
		for _, format := range []string{"json", "csv", "html"} {
			if diff := cmp.Diff(string(want[format]), string(got[format])); diff != "" {
				t.Errorf("--days %d --format %s: the builder's report differs (-BuildReport +builder):\n%s", days, format, diff)
			}
		}
	}
}
