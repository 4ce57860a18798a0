package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/server"
)

// stent fleet plan and stent fleet report over a real server with real
// feeds and simulated agents reporting policy/testdata/fleet's
// inventories: the plan has every host, --host and --label select, and
// the report is byte for byte what stent report renders of the same plan
// saved with --json.
func TestFleetPlanAndReport(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and agents")
	}
	srv := startTestServerWith(t, func(cfg *server.Config) {
		cfg.Feeds = []string{
			"debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
			"cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
			"osv=" + filepath.Join(vulnData, "osv"),
		}
	})
	url := os.Getenv("STENT_SERVER")
	root := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, root, args...)
		if code != 0 {
			t.Fatalf("stent %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out
	}

	files := []string{"web1", "web2", "db1"}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	var tok struct{ Secret string }
	if err := json.Unmarshal([]byte(run("fleet", "enroll-token", "--json")), &tok); err != nil {
		t.Fatal(err)
	}
	fl, err := fleetsim.Enroll(context.Background(), fleetsim.Config{
		Server: url, Fingerprint: srv.Fingerprint(), EnrollToken: tok.Secret, N: len(files), Kernel: "6.1.0-54-amd64",
		Keys: bundle.NewKeyring(pub), Dir: t.TempDir(), MaxBackoff: 500 * time.Millisecond,
		Inventory: func(i int) json.RawMessage {
			b, err := os.ReadFile(filepath.Join(policyData, "fleet", files[i]+".json"))
			if err != nil {
				t.Error(err)
			}
			return b
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	fl.Start(context.Background())
	t.Cleanup(fl.Stop)

	var fp policy.FleetPlan
	var planJSON string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _, code := runCLI(t, root, "fleet", "plan", "--json")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &fp); err != nil {
				t.Fatalf("stent fleet plan --json printed %q: %v", out, err)
			}
			if len(fp.Hosts) == len(files) {
				planJSON = out
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stent fleet plan --json: %d hosts after 30s, want %d", len(fp.Hosts), len(files))
		}
	}
	for i, name := range []string{"db1", "web1", "web2"} {
		if h := fp.Hosts[i]; h.Hostname != name || len(h.Compliance) != 2 || h.Inventory == "" {
			t.Errorf("plan host %d = %s with %d rules (inventory %q), want %s under the default policy's 2 rules", i, h.Hostname, len(h.Compliance), h.Inventory, name)
		}
	}
	if fp.Format != policy.PlanFormat || len(fp.Fleet) != 2 || len(fp.Feeds) < 3 {
		t.Errorf("plan = format %q, %d fleet rules, %d feeds; want a stent plan with the server's feeds", fp.Format, len(fp.Fleet), len(fp.Feeds))
	}
	text := run("fleet", "plan")
	if !strings.Contains(text, "for 3 host(s)") || !strings.Contains(text, "\nweb2 ") {
		t.Errorf("stent fleet plan printed:\n%s", text)
	}
	one := run("fleet", "plan", "--host", "web2", "--json")
	var fp1 policy.FleetPlan
	if err := json.Unmarshal([]byte(one), &fp1); err != nil || len(fp1.Hosts) != 1 || fp1.Hosts[0].Hostname != "web2" {
		t.Errorf("stent fleet plan --host web2 = %d hosts, %v", len(fp1.Hosts), err)
	}
	if _, errs, code := runCLI(t, root, "fleet", "plan", "--label", "nolabel"); code != 2 || !strings.Contains(errs, "--label") {
		t.Errorf("stent fleet plan --label nolabel = exit %d, %s; want 2 naming --label", code, errs)
	}

	// The same report as stent report of the saved plan, in every format.
	saved := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(saved, []byte(planJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"csv", "json", "html"} {
		// The live plan may be made again between two calls (a check-in):
		// compare with a plan saved right before the report.
		var fleetReport, report string
		for try := 0; try < 5; try++ {
			planJSON = run("fleet", "plan", "--json")
			os.WriteFile(saved, []byte(planJSON), 0o644)
			fleetReport = run("fleet", "report", "--format", format)
			report = run("report", "--plan", saved, "--format", format)
			if fleetReport == report {
				break
			}
		}
		if fleetReport != report || len(report) < 100 {
			t.Errorf("stent fleet report --format %s differs from stent report --plan of the same plan (%d and %d bytes)", format, len(fleetReport), len(report))
		}
	}
	// The report as the server makes it (api.Client.FleetReport, what
	// stent fleet report reads): the same report.
	tokb, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: srv.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	ac := &api.Client{BaseURL: url, Token: strings.TrimSpace(string(tokb)), HTTP: hc}
	var paged, whole string
	for try := 0; try < 5; try++ {
		planJSON = run("fleet", "plan", "--json")
		os.WriteFile(saved, []byte(planJSON), 0o644)
		wr, err := ac.FleetReport(context.Background(), api.PlanQuery{}, 90)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := wr.Report.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		paged, whole = b.String(), run("report", "--plan", saved, "--format", "json", "--days", "90")
		if paged == whole {
			break
		}
	}
	if paged != whole {
		t.Errorf("FleetReport differs from stent report --plan of the same plan:\n%s\n---\n%s", paged, whole)
	}

	// A host relabelled: the plan selects it by its new label at once.
	id := fp.Hosts[0].Inventory
	if out := run("fleet", "set-labels", id, "role=db", "--reason", "test"); !strings.HasPrefix(out, id+" (") || !strings.HasSuffix(out, ") labels: role=db\n") {
		t.Errorf("stent fleet set-labels printed %q", out)
	}
	var byLabel policy.FleetPlan
	if err := json.Unmarshal([]byte(run("fleet", "plan", "--label", "role=db", "--json")), &byLabel); err != nil || len(byLabel.Hosts) != 1 || byLabel.Hosts[0].Hostname != "db1" {
		t.Errorf("stent fleet plan --label role=db = %d hosts, %v; want db1", len(byLabel.Hosts), err)
	}
	if _, errs, code := runCLI(t, root, "fleet", "set-labels", id, "nolabel"); code != 2 || !strings.Contains(errs, "nolabel") {
		t.Errorf("stent fleet set-labels ID nolabel = exit %d, %s; want 2 naming the label", code, errs)
	}
	if _, errs, code := runCLI(t, root, "fleet", "set-labels", "h_nosuch", "a=b"); code != 1 || !strings.Contains(errs, "h_nosuch") {
		t.Errorf("stent fleet set-labels h_nosuch = exit %d, %s; want 1 naming the host", code, errs)
	}

	if _, errs, code := runCLI(t, root, "fleet", "report", "--format", "pdf"); code != 2 || !strings.Contains(errs, "--format") {
		t.Errorf("stent fleet report --format pdf = exit %d, %s; want 2", code, errs)
	}

	// The policy: a malformed file is refused with its line and field, a
	// good one is the next version and the plan follows it.
	dir := t.TempDir()
	bad, good := filepath.Join(dir, "bad.json"), filepath.Join(dir, "good.json")
	os.WriteFile(bad, []byte("{\"schema_version\": 1,\n \"presets\": [\"default\", \"pci-dss\"],\n \"unattended\": [\"upgrade-package\"]}\n"), 0o644)
	os.WriteFile(good, []byte("{\"schema_version\": 1,\n \"presets\": [\"default\", \"pci-dss\"]}\n"), 0o644)
	if _, errs, code := runCLI(t, root, "fleet", "policy", "set", bad); code != 1 || !strings.Contains(errs, bad+":3:17: unattended[0]") {
		t.Errorf("stent fleet policy set bad.json = exit %d, %s; want 1 naming %s:3:17 and unattended[0]", code, errs, bad)
	}
	if out := run("fleet", "policy", "set", good, "--reason", "PCI scope"); !strings.Contains(out, "policy version 1 in force") {
		t.Errorf("stent fleet policy set good.json printed %q", out)
	}
	show := run("fleet", "policy", "show")
	if !strings.Contains(show, "Policy version 1: "+good) || !strings.Contains(show, "Rule pci-dss-6.3.3:") || !strings.Contains(show, "PCI scope") {
		t.Errorf("stent fleet policy show printed:\n%s", show)
	}
	if src := run("fleet", "policy", "show", "--source"); !strings.Contains(src, `"pci-dss"`) {
		t.Errorf("stent fleet policy show --source printed %q", src)
	}
	if out := run("fleet", "actions"); !strings.Contains(out, "Policy version 1; unattended: none.") {
		t.Errorf("stent fleet actions printed %q", out)
	}
	if out := run("fleet", "actions", "list", "--json"); !strings.Contains(out, `"policy_version": 1`) {
		t.Errorf("stent fleet actions list --json printed %q", out)
	}
	if _, errs, code := runCLI(t, root, "fleet", "actions", "approve", "act_nosuch"); code != 1 || !strings.Contains(errs, "no action act_nosuch") {
		t.Errorf("stent fleet actions approve act_nosuch = exit %d, %s", code, errs)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var p policy.FleetPlan
		json.Unmarshal([]byte(run("fleet", "plan", "--json")), &p)
		if len(p.Fleet) == 3 && p.Fleet[2].Rule == "pci-dss-6.3.3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plan has rules %+v after the policy was set, want pci-dss-6.3.3 too", p.Fleet)
		}
	}
}
