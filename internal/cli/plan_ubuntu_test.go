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

// An Ubuntu host (inventory/collect/testdata/ubuntu-host: os-release ID=ubuntu, an
// Ubuntu /proc/version, linux-image-6.8.0-45-generic in dpkg) planned
// against Debian's changelog and the kernel CNA sample: the changelog does
// not speak for Ubuntu, the CNA ranges do for the upstream version in
// /proc/version_signature (fixed in it, or not affected), and every other
// CVE is unknown, including those the CNA says are fixed in a later
// upstream release: no feed maps that fix to an Ubuntu package. Without the
// signature no upstream version is known and every CVE is unknown. Never
// "not affected" or "compliant" by default.
func TestPlanUbuntuHost(t *testing.T) {
	code, stdout, stderr := execStent(t, "inventory", "--root", filepath.Join(invData, "ubuntu-host"), "--run-dir", filepath.Join(invData, "ubuntu-host", "run/stent"), "--now", "2026-11-23T00:00:00Z", "--json")
	if code != 0 {
		t.Fatalf("stent inventory --root ubuntu-host = exit %d: %s", code, stderr)
	}
	dir := t.TempDir()
	withSig := filepath.Join(dir, "ubu1.json")
	if err := os.WriteFile(withSig, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same host without /proc/version_signature (some containers and
	// old kernels): the package version from dpkg, no upstream version.
	noSig := filepath.Join(dir, "ubu1-nosig.json")
	if !strings.Contains(stdout, `"upstream": "6.8.12",`) {
		t.Fatalf("inventory lacks the upstream version of the signature:\n%s", stdout)
	}
	if err := os.WriteFile(noSig, []byte(strings.Replace(stdout, `"upstream": "6.8.12",`, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	feeds := []string{
		"--feed", "debian-changelog=" + filepath.Join(vulnData, "linux-image-6.1.0-56-amd64.changelog.gz"),
		"--feed", "cna=" + filepath.Join(vulnData, "kernel-cna-sample.tar.gz"),
		"--feed", "nvd=" + filepath.Join(vulnData, "nvd"),
		"--now", "2026-11-23T00:00:00Z",
	}
	plan := func(inv string) policy.HostPlan {
		t.Helper()
		code, stdout, stderr := execStent(t, append([]string{"plan", "--json", "--inventory", inv}, feeds...)...)
		if code != 0 {
			t.Fatalf("stent plan --inventory %s = exit %d: %s", inv, code, stderr)
		}
		var fp policy.FleetPlan
		if err := json.Unmarshal([]byte(stdout), &fp); err != nil || len(fp.Hosts) != 1 {
			t.Fatalf("plan: %v", err)
		}
		h := fp.Hosts[0]
		if h.Distro != "ubuntu 24.04" || h.Track != "" {
			t.Errorf("plan of %s: distro %q, track %q; want ubuntu 24.04 and no distribution data (the changelog is Debian's)", inv, h.Distro, h.Track)
		}
		for _, rr := range h.Compliance {
			if rr.Status == policy.Compliant {
				t.Errorf("plan of %s: rule %s compliant, though most CVEs are unknown", inv, rr.Rule)
			}
		}
		code, stdout, stderr = execStent(t, append([]string{"report", "--format", "csv", "--inventory", inv}, feeds...)...)
		if code != 0 || strings.Contains(stdout, ","+policy.Compliant+",") {
			t.Errorf("report of %s = exit %d (%s), a row compliant:\n%s", inv, code, stderr, stdout)
		}
		return h
	}

	h := plan(withSig)
	judged := h.Counts[vuln.NotAffected] + h.Counts[vuln.FixedRunning]
	if judged == 0 || judged > 300 || h.Counts[vuln.Unknown] == 0 {
		t.Errorf("with a signature: counts %v; want the 300 CNA records judged, the rest unknown", h.Counts)
	}
	// The CNA says 6.8.12 is affected and later branches are fixed (6.8
	// reached its end of life upstream); Ubuntu maintains 6.8 itself, and
	// no feed here says which Ubuntu package carries those fixes. That is
	// unknown, to be closed by adding Ubuntu's OSV data, not "no fix
	// released" with a mitigate action.
	if n := h.Counts[vuln.NoFix]; n != 0 {
		t.Errorf("with a signature: %d CVEs no-fix, though no feed speaks for Ubuntu packages", n)
	}
	fixedUpstream := 0
	for _, f := range h.Exposure {
		if f.State != vuln.Unknown && !strings.HasPrefix(f.Evidence, "kernel CNA") {
			t.Errorf("with a signature: %s is %s on evidence %q; only the CNA data speaks for Ubuntu here", f.CVE, f.State, f.Evidence)
		}
		if strings.Contains(f.Evidence, "fixed upstream in") {
			fixedUpstream++
			if f.State != vuln.Unknown || f.UpstreamFix == "" || !strings.Contains(f.Evidence, "no feed maps Ubuntu 24.04 packages to fixes: add an OSV feed for Ubuntu") {
				t.Errorf("with a signature: %s is %s (upstream fix %q) on %q; want unknown, naming the upstream fix and the missing feed", f.CVE, f.State, f.UpstreamFix, f.Evidence)
			}
		}
	}
	if fixedUpstream < 100 {
		t.Errorf("with a signature: %d CVEs fixed upstream after 6.8.12, want the sample's 168", fixedUpstream)
	}
	for _, a := range h.Actions {
		if a.Kind == policy.ActMitigate {
			t.Errorf("with a signature: action %s for %d CVEs; nothing says no fix is released for Ubuntu", a.Kind, len(a.CVEs))
		}
	}

	h = plan(noSig)
	if n := h.Counts[vuln.Unknown]; n == 0 || len(h.Counts) != 1 {
		t.Errorf("without a signature: counts %v; want every CVE unknown", h.Counts)
	}
}
