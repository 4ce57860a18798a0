package vuln

import (
	"strings"
	"testing"

	"github.com/stent-dev/stent/inventory"
)

func realDB(t testing.TB) *DB {
	t.Helper()
	db, err := Load(t.Context(), []FeedSpec{
		{FeedDebianChangelog, realChangelog},
		{FeedCNA, cnaSample},
		{FeedOSV, "testdata/osv"},
		{FeedNVD, "testdata/nvd"},
		{FeedLivePatch, "testdata/livepatch"},
	}, LoadOptions{})
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	return db
}

func debianHost(t testing.TB, running, runRelease, newest, newRelease string, patches ...AppliedPatch) Host {
	t.Helper()
	inv := &inventory.Inventory{
		SchemaVersion: inventory.SchemaVersion, Hostname: "h",
		OS:     inventory.OS{ID: "debian", VersionID: "12", Codename: "bookworm", Family: "deb"},
		Kernel: inventory.Kernel{Release: runRelease, PackageVersion: running},
		KernelPackages: []inventory.Package{
			{Name: "linux-image-" + runRelease, Version: running, Release: runRelease},
		},
		NewestKernel: runRelease,
	}
	if newRelease != runRelease || newest != running {
		inv.KernelPackages = append(inv.KernelPackages, inventory.Package{Name: "linux-image-" + newRelease, Version: newest, Release: newRelease})
		inv.NewestKernel = newRelease
		if newRelease == runRelease {
			inv.KernelPackages = inv.KernelPackages[1:]
		}
	}
	for _, p := range patches {
		inv.LivePatches = append(inv.LivePatches, inventory.LivePatch{Name: p.Name, Enabled: true, CVEs: p.CVEs})
	}
	h, err := HostFromInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func findingsByCVE(e *Exposure) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range e.Findings {
		m[f.CVE] = f
	}
	return m
}

func TestExposureStates(t *testing.T) {
	db := realDB(t)
	tests := []struct {
		name string
		host Host
		cve  string
		want State
		with string // a substring of the finding's fields
	}{
		{"fixed in running", debianHost(t, "6.1.192-1", "6.1.0-55-amd64", "6.1.192-1", "6.1.0-55-amd64"), "CVE-2026-99228", FixedRunning, ""},
		{"update needed", debianHost(t, "6.1.190-1", "6.1.0-54-amd64", "6.1.190-1", "6.1.0-54-amd64"), "CVE-2026-99228", UpdateNeeded, "6.1.192-1"},
		{"installed not booted", debianHost(t, "6.1.190-1", "6.1.0-54-amd64", "6.1.192-2", "6.1.0-56-amd64"), "CVE-2026-99228", FixedInstalled, "6.1.0-56-amd64"},
		{"live patched", debianHost(t, "6.1.190-1", "6.1.0-54-amd64", "6.1.190-1", "6.1.0-54-amd64", AppliedPatch{"lp1", []string{"CVE-2026-99228"}}), "CVE-2026-99228", FixedLivePatch, "lp1"},
		// CVE-2024-14027 came into 6.6.51 by a backport; 6.1 never had it.
		{"not affected (CNA)", debianHost(t, "6.1.192-2", "6.1.0-56-amd64", "6.1.192-2", "6.1.0-56-amd64"), "CVE-2024-14027", NotAffected, ""},
		// A backports kernel of another branch: the bookworm changelog does
		// not speak for it; the CNA ranges do.
		{"other branch: CNA", debianHost(t, "6.12.9-1~bpo12+1", "6.12.9+bpo-amd64", "6.12.9-1~bpo12+1", "6.12.9+bpo-amd64"), "CVE-2024-14027", NoFix, "6.12.77"},
		{"unknown beats clean", debianHost(t, "6.12.9-1~bpo12+1", "6.12.9+bpo-amd64", "6.12.9-1~bpo12+1", "6.12.9+bpo-amd64"), "CVE-2026-99228", Unknown, ""},
	}
	for _, tt := range tests {
		e, err := db.Evaluate(tt.host)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		f, ok := findingsByCVE(e)[tt.cve]
		got := f.State
		if !ok {
			got = FixedRunning
			if db.verdict(&tt.host, db.trackFor(&tt.host), int(db.byID[tt.cve]), mustOrd(t, db, tt.host), tt.host.Running.Upstream).status == vNotAffected {
				got = NotAffected
			}
		}
		if got != tt.want {
			t.Errorf("%s: %s is %s (%s), want %s", tt.name, tt.cve, got, f.Evidence, tt.want)
			continue
		}
		if tt.with != "" {
			all := strings.Join([]string{f.FixedIn, f.Kernel, f.LivePatch, f.UpstreamFix, f.Evidence}, " ")
			if !strings.Contains(all, tt.with) {
				t.Errorf("%s: finding %+v lacks %q", tt.name, f, tt.with)
			}
		}
	}
}

func mustOrd(t testing.TB, db *DB, h Host) int32 {
	tr := db.trackFor(&h)
	if tr == nil {
		return 0
	}
	o, err := tr.ord(h.Running.Version)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// Where the kernel CNA and the Debian changelog both speak of a CVE (79 in
// the sample), they mostly agree: the Debian upload that names it is built
// on an upstream release the CNA says is fixed. Where they do not (Debian
// fixed it before upstream stable did, or the CNA snapshot is older than the
// upload), the distribution's word decides, since it tells what the package
// carries.
func TestDebianChangelogAndCNA(t *testing.T) {
	db := realDB(t)
	tr := db.tracks[trackKey{"Debian", "12", "linux"}]
	counts := map[UpstreamStatus]int{}
	for vi, v := range db.Vulns {
		if v.Upstream == nil || len(tr.entries[vi]) == 0 {
			continue
		}
		deb := tr.versionAt(tr.entries[vi][0].fixed)
		st, _ := v.Upstream.Status(deb.upstream)
		counts[st]++
		h := debianHost(t, deb.version, "6.1.0-99-amd64", deb.version, "6.1.0-99-amd64")
		o, err := tr.ord(deb.version)
		if err != nil {
			t.Fatal(err)
		}
		if got := db.verdict(&h, tr, vi, o, h.Running.Upstream); got.status != vFixed {
			t.Errorf("%s on %s: %v (%s), want fixed: Debian names it in that upload", v.ID, deb.version, got.status, got.evidence)
		}
	}
	t.Logf("CNA status of the upstream release of the Debian upload naming the CVE: %v", counts)
	if counts[UpstreamFixed] < 40 || counts[UpstreamFixed]+counts[UpstreamAffected]+counts[UpstreamNotAffected] != 79 {
		t.Errorf("CNA says fixed for %d of the CVEs both name, want at least 40 of 79 (%v)", counts[UpstreamFixed], counts)
	}
}

func TestEvaluateSharesResults(t *testing.T) {
	db := realDB(t)
	a, err := db.Evaluate(debianHost(t, "6.1.190-1", "6.1.0-54-amd64", "6.1.190-1", "6.1.0-54-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.Evaluate(debianHost(t, "6.1.190-1", "6.1.0-54-amd64", "6.1.190-1", "6.1.0-54-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("two hosts in the same situation got two evaluations")
	}
	if f := findingsByCVE(a)["CVE-2026-99228"]; f.AvailablePatch != "stent-6.1.0-54-1" {
		t.Errorf("available live patch = %q, want stent-6.1.0-54-1", f.AvailablePatch)
	}
}

func TestHostFromInventoryErrors(t *testing.T) {
	base := inventory.Inventory{Hostname: "h", OS: inventory.OS{ID: "debian", VersionID: "12", Family: "deb"},
		Kernel: inventory.Kernel{Release: "6.1.0-56-amd64", PackageVersion: "6.1.192-2"}}
	for _, tt := range []struct {
		name string
		mod  func(*inventory.Inventory)
		want string
	}{
		{"unknown distro", func(i *inventory.Inventory) { i.OS.ID = "plan9" }, `os.id "plan9": unknown distribution`},
		{"bad version", func(i *inventory.Inventory) { i.Kernel.PackageVersion = "six" }, `debian version "six"`},
		{"family mismatch", func(i *inventory.Inventory) { i.OS.Family = "rpm" }, "does not match"},
	} {
		inv := base
		tt.mod(&inv)
		if _, err := HostFromInventory(&inv); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: HostFromInventory = %v, want %q", tt.name, err, tt.want)
		}
	}
}
