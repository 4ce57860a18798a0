package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// planOne runs stent plan --json on one inventory file and returns its host.
func planOne(t *testing.T, inv string, feeds ...string) policy.HostPlan {
	t.Helper()
	args := []string{"plan", "--json", "--inventory", inv, "--now", "2026-11-23T00:00:00Z"}
	for _, f := range feeds {
		args = append(args, "--feed", f)
	}
	code, stdout, stderr := execStent(t, args...)
	if code != 0 {
		t.Fatalf("stent plan --inventory %s = exit %d: %s", inv, code, stderr)
	}
	var fp policy.FleetPlan
	if err := json.Unmarshal([]byte(stdout), &fp); err != nil || len(fp.Hosts) != 1 {
		t.Fatalf("plan of %s: %v", inv, err)
	}
	return fp.Hosts[0]
}

// A Debian testing/unstable host (inventory/collect/testdata/debian-sid-host:
// os-release without VERSION_ID, "Debian GNU/Linux trixie/sid", running
// 6.11.10-1) is judged by the changelog of unstable
// (vuln/testdata/linux-sid.changelog, uploads 6.11.9-1 to 6.12.12-1): its
// kernels are that one line of uploads, so the 6.12 uploads are its
// upgrades, also for fixes upstream never made in 6.11.
func TestPlanDebianSidHost(t *testing.T) {
	code, stdout, stderr := execStent(t, "inventory", "--root", filepath.Join(invData, "debian-sid-host"), "--run-dir", filepath.Join(invData, "debian-sid-host", "run/stent"), "--now", "2026-11-23T00:00:00Z", "--json")
	if code != 0 {
		t.Fatalf("stent inventory --root debian-sid-host = exit %d: %s", code, stderr)
	}
	inv := filepath.Join(t.TempDir(), "sid1.json")
	if err := os.WriteFile(inv, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	cna := "cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz")
	h := planOne(t, inv, "debian-changelog="+filepath.Join(vulnData, "linux-sid.changelog"), cna)
	if h.Distro != "debian unstable" || h.Track != "Debian:unstable/linux" {
		t.Errorf("sid host: distro %q, track %q; want debian unstable, Debian:unstable/linux", h.Distro, h.Track)
	}
	want := map[string]string{
		"CVE-2025-38029": "6.12.12-1", // named by the 6.12.12-1 upload
		"CVE-2024-48876": "6.12.9-1",  // no 6.11 fix upstream; 6.12.5 has it
		"CVE-2025-21642": "6.12.12-1", // fixed in 6.12.10
	}
	for _, f := range h.Exposure {
		if v, ok := want[f.CVE]; ok {
			if f.State != vuln.UpdateNeeded || f.FixedIn != v {
				t.Errorf("sid host: %s is %s, fixed in %q (%s); want update-needed to %s", f.CVE, f.State, f.FixedIn, f.Evidence, v)
			}
			delete(want, f.CVE)
		}
	}
	for id := range want {
		t.Errorf("sid host: %s not among the exposed CVEs", id)
	}
	if h.Counts[vuln.UpdateNeeded] < 20 {
		t.Errorf("sid host: counts %v; want the CNA's 6.11 CVEs mapped to 6.12 uploads", h.Counts)
	}
	// Fixed upstream after 6.12.12: the changelog lists every upload to
	// unstable and none has it yet.
	for _, f := range h.Exposure {
		if f.State == vuln.NoFix && !strings.Contains(f.Evidence, "not yet in a Debian:unstable/linux package") {
			t.Errorf("sid host: %s no-fix on %q", f.CVE, f.Evidence)
		}
	}
	for _, rr := range h.Compliance {
		if rr.Status == policy.Compliant {
			t.Errorf("sid host: rule %s compliant with fixes released and not booted", rr.Rule)
		}
	}

	// With only bookworm's changelog nothing maps fixes to its packages:
	// unknown, never no-fix or compliant.
	h = planOne(t, inv, "debian-changelog="+filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"), cna)
	if h.Track != "" || h.Counts[vuln.NoFix] != 0 || h.Counts[vuln.UpdateNeeded] != 0 || h.Counts[vuln.Unknown] == 0 {
		t.Errorf("sid host with bookworm's changelog: track %q, counts %v; want no track, CVEs unknown, none no-fix", h.Track, h.Counts)
	}
	for _, rr := range h.Compliance {
		if rr.Status == policy.Compliant {
			t.Errorf("sid host with bookworm's changelog: rule %s compliant", rr.Rule)
		}
	}
}

// A Debian os-release with a codename and no VERSION_ID (bookworm) is that
// release: planned exactly as with VERSION_ID=12.
func TestPlanDebianCodenames(t *testing.T) {
	web2, err := os.ReadFile(filepath.Join(policyData, "fleet", "web2.json"))
	if err != nil {
		t.Fatal(err)
	}
	noVersion := strings.Replace(string(web2), `"version_id": "12",`, "", 1)
	if noVersion == string(web2) {
		t.Fatal("web2.json lacks version_id 12")
	}
	inv := filepath.Join(t.TempDir(), "web2-codename.json")
	if err := os.WriteFile(inv, []byte(noVersion), 0o644); err != nil {
		t.Fatal(err)
	}
	feed := "debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz")
	got := planOne(t, inv, feed)
	want := planOne(t, filepath.Join(policyData, "fleet", "web2.json"), feed)
	if got.Track != "Debian:12/linux" || got.Distro != "debian 12" {
		t.Errorf("codename bookworm: track %q, distro %q; want Debian:12/linux, debian 12", got.Track, got.Distro)
	}
	gc, _ := json.Marshal(got.Counts)
	wc, _ := json.Marshal(want.Counts)
	if string(gc) != string(wc) {
		t.Errorf("codename bookworm: counts %s, want those of VERSION_ID=12: %s", gc, wc)
	}
}
