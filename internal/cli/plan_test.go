package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
)

// Fixtures live with the packages that own them.
var (
	vulnData   = filepath.Join("..", "..", "vuln", "testdata")
	policyData = filepath.Join("..", "..", "policy", "testdata")
	invData    = filepath.Join("..", "..", "inventory", "collect", "testdata")
)

func feedArgs() []string {
	return []string{
		"--feed", "debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
		"--feed", "cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
		"--feed", "osv=" + filepath.Join(vulnData, "osv"),
		"--feed", "nvd=" + filepath.Join(vulnData, "nvd"),
		"--feed", "livepatch=" + filepath.Join(vulnData, "livepatch"),
		"--now", "2026-11-23T00:00:00Z",
	}
}

func TestInventoryCommand(t *testing.T) {
	root := filepath.Join(invData, "debian-host")
	code, stdout, stderr := execStent(t, "inventory", "--root", root, "--run-dir", filepath.Join(root, "run/stent"), "--now", "2026-11-23T00:00:00Z", "--json")
	if code != 0 {
		t.Fatalf("stent inventory --json = exit %d: %s", code, stderr)
	}
	inv, err := inventory.Decode("stdout", strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("stent inventory --json output does not decode as an inventory: %v", err)
	}
	if inv.Hostname != "web1" || inv.Kernel.PackageVersion != "6.1.190-1" || !inv.Reboot.Required {
		t.Errorf("inventory = %s %s reboot %v", inv.Hostname, inv.Kernel.PackageVersion, inv.Reboot.Required)
	}
	code, stdout, _ = execStent(t, "inventory", "--root", root, "--run-dir", filepath.Join(root, "run/stent"), "--now", "2026-11-23T00:00:00Z")
	for _, want := range []string{"Kernel:", "6.1.0-54-amd64 (package 6.1.190-1, upstream 6.1.190)", "newer-kernel-installed", "nginx.service", "stent_cve_2026_99228 (enabled): CVE-2026-99228"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("stent inventory lacks %q:\n%s", want, stdout)
		}
	}
	code, _, stderr = execStent(t, "inventory", "--root", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "/proc/sys/kernel/hostname") {
		t.Errorf("stent inventory on an empty root = exit %d, %q", code, stderr)
	}
}

func TestPlanCommand(t *testing.T) {
	args := append([]string{"plan", "--inventory", filepath.Join(policyData, "fleet"), "--policy", filepath.Join(policyData, "policy.json"), "--json"}, feedArgs()...)
	code, stdout, stderr := execStent(t, args...)
	if code != 0 {
		t.Fatalf("stent plan = exit %d: %s", code, stderr)
	}
	var fp policy.FleetPlan
	if err := json.Unmarshal([]byte(stdout), &fp); err != nil {
		t.Fatal(err)
	}
	if len(fp.Hosts) != 5 || fp.Hosts[4].Hostname != "web2" {
		t.Fatalf("plan has %d hosts", len(fp.Hosts))
	}
	web2 := fp.Hosts[4]
	if a := web2.Actions[0]; a.Kind != policy.ActApplyLivePatch || a.LivePatch != "stent-6.1.0-54-1" {
		t.Errorf("web2's first action = %+v, want the live patch", a)
	}
	// The text form.
	code, stdout, _ = execStent(t, append([]string{"plan", "--inventory", filepath.Join(policyData, "fleet", "web2.json")}, feedArgs()...)...)
	for _, want := range []string{"web2", "apply live patch stent-6.1.0-54-1 now", "[1 CVE: CVE-2026-99228] -- overdue", "emergency reboot into the kernel of linux-image-amd64 6.1.192-1 or later"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("stent plan text lacks %q:\n%s", want, stdout)
		}
	}
}

func TestPlanCommandRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	web2, err := os.ReadFile(filepath.Join(policyData, "fleet", "web2.json"))
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(policyData, "fleet", "web2.json")
	// A feed that says which kernels fix which CVE, so that the cases
	// below reach the error they are about.
	changelog := "debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no feeds", []string{"--inventory", good}, "no feeds"},
		{"only nvd", []string{"--inventory", good, "--feed", "nvd=" + filepath.Join(vulnData, "nvd")}, "no feed says which kernels fix which CVE: only nvd given; add at least one --feed of kind debian-changelog, cna, osv"},
		{"only nvd and livepatch", []string{"--inventory", good, "--feed", "nvd=" + filepath.Join(vulnData, "nvd"), "--feed", "livepatch=" + filepath.Join(vulnData, "livepatch")}, "only nvd and livepatch given"},
		{"unknown kind", []string{"--inventory", good, "--feed", "rss=x"}, `unknown kind "rss"`},
		{"unknown distro", []string{"--inventory", write("plan9.json", strings.Replace(string(web2), `"id": "debian"`, `"id": "plan9"`, 1)), "--feed", "nvd=" + filepath.Join(vulnData, "nvd"), "--feed", changelog}, `os.id "plan9": unknown distribution`},
		{"unparsable version", []string{"--inventory", write("v.json", strings.Replace(string(web2), `"package_version": "6.1.190-1"`, `"package_version": "six"`, 1)), "--feed", "nvd=" + filepath.Join(vulnData, "nvd"), "--feed", changelog}, `debian version "six"`},
		{"feed with a missing field", []string{"--inventory", good, "--feed", "nvd=" + write("nvd.json", `{"format":"NVD_CVE","vulnerabilities":[{"cve":{}}]}`), "--feed", changelog}, "nvd.json: vulnerabilities[0].cve.id: missing required field"},
		{"malformed changelog", []string{"--inventory", good, "--feed", "debian-changelog=" + write("changelog", "linux (6.1-1) bookworm; urgency=high\n  * x\n")}, "changelog:1: trailer"},
		{"bad now", []string{"--inventory", good, "--feed", "nvd=x", "--now", "yesterday"}, "--now"},
		{"other schema", []string{"--inventory", write("s.json", `{"schema_version": 7}`), "--feed", "nvd=" + filepath.Join(vulnData, "nvd"), "--feed", changelog}, "schema_version 7"},
	}
	for _, tt := range tests {
		code, stdout, stderr := execStent(t, append([]string{"plan"}, tt.args...)...)
		if code == 0 || !strings.Contains(stderr, tt.want) || strings.Contains(stdout, "compliant") {
			t.Errorf("%s: stent plan = exit %d, stderr %q, want a failure containing %q and no plan", tt.name, code, stderr, tt.want)
		}
	}
	// Feeds that cannot say which kernels fix a CVE are a usage error for
	// report too.
	nvdOnly := []string{"--inventory", good, "--feed", "nvd=" + filepath.Join(vulnData, "nvd"), "--feed", "livepatch=" + filepath.Join(vulnData, "livepatch")}
	for _, cmd := range []string{"plan", "report"} {
		code, stdout, stderr := execStent(t, append([]string{cmd}, nvdOnly...)...)
		if code != 2 || !strings.Contains(stderr, "add at least one --feed of kind debian-changelog, cna, osv") || stdout != "" {
			t.Errorf("stent %s with only nvd and livepatch feeds = exit %d, stdout %q, stderr %q; want exit 2 naming the feed kinds that would do", cmd, code, stdout, stderr)
		}
	}
}
