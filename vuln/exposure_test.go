package vuln

import (
	"os"
	"path/filepath"
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
		// not speak for it; the CNA ranges do, but nothing tells which
		// backports package carries the 6.12.77 fix.
		{"other branch: CNA", debianHost(t, "6.12.9-1~bpo12+1", "6.12.9+bpo-amd64", "6.12.9-1~bpo12+1", "6.12.9+bpo-amd64"), "CVE-2024-14027", Unknown, "Debian:12/linux covers upstream 6.1 only, not 6.12"},
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

// hostOf makes a host from an os-release and a running kernel (release,
// package version, upstream version or "") with an optional newer
// installed kernel (release, version).
func hostOf(t testing.TB, o inventory.OS, release, version, upstream string, newer ...string) Host {
	t.Helper()
	inv := &inventory.Inventory{
		SchemaVersion: inventory.SchemaVersion, Hostname: "h", OS: o,
		Kernel:         inventory.Kernel{Release: release, PackageVersion: version, Upstream: upstream},
		KernelPackages: []inventory.Package{{Name: "k-" + release, Version: version, Release: release}},
		NewestKernel:   release,
	}
	if len(newer) == 2 {
		inv.KernelPackages = append(inv.KernelPackages, inventory.Package{Name: "k-" + newer[0], Version: newer[1], Release: newer[0]})
		inv.NewestKernel = newer[0]
	}
	h, err := HostFromInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var (
	ubuntu2404 = inventory.OS{ID: "ubuntu", VersionID: "24.04", Codename: "noble", Family: "deb"}
	debian13   = inventory.OS{ID: "debian", VersionID: "13", Codename: "trixie", Family: "deb"}
	fedora41   = inventory.OS{ID: "fedora", VersionID: "41", Family: "rpm"}
	// Debian testing or unstable: no VERSION_ID.
	debianSid = inventory.OS{ID: "debian", Codename: "trixie", PrettyName: "Debian GNU/Linux trixie/sid", Family: "deb"}
)

type stateCase struct {
	name string
	host Host
	cve  string
	want State
	with string // a substring of the finding's fields
}

func checkStates(t *testing.T, db *DB, tests []stateCase) {
	t.Helper()
	for _, tt := range tests {
		e, err := db.Evaluate(tt.host)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if db.Lookup(tt.cve) == nil {
			t.Fatalf("%s: %s not in the feeds", tt.name, tt.cve)
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

// A CVE fixed upstream is "no-fix" only when the distribution's own data
// says no package of it carries the fix; when no feed maps fixes to the
// host's packages (Ubuntu or Fedora without their OSV data, a Debian
// release whose changelog was not given, a backports kernel) it is
// unknown, and the evidence names the feed to add. CVE numbers are from
// the CNA sample: CVE-2024-58001 affects 6.8.12, fixed upstream in later
// branches only (6.8 reached its end of life); CVE-2025-21642 is fixed in
// 6.12.10; CVE-2024-48876 in 6.12.5; CVE-2025-38029 has no fix upstream;
// CVE-2024-35843 affects 6.1.192 and is fixed in 6.8.2, not in 6.1.
func TestExposureWithoutDistributionData(t *testing.T) {
	db := realDB(t)
	ubuntu := hostOf(t, ubuntu2404, "6.8.0-45-generic", "6.8.0-45.45", "6.8.12")
	trixie := hostOf(t, debian13, "6.12.9-amd64", "6.12.9-1", "")
	fedora := hostOf(t, fedora41, "6.12.9-200.fc41.x86_64", "6.12.9-200.fc41", "")
	fedoraNewer := hostOf(t, fedora41, "6.12.9-200.fc41.x86_64", "6.12.9-200.fc41", "", "6.12.12-200.fc41.x86_64", "6.12.12-200.fc41")
	bookworm := debianHost(t, "6.1.192-2", "6.1.0-56-amd64", "6.1.192-2", "6.1.0-56-amd64")
	checkStates(t, db, []stateCase{
		{"ubuntu: fixed upstream in another branch", ubuntu, "CVE-2024-58001", Unknown, "no feed maps Ubuntu 24.04 packages to fixes: add an OSV feed for Ubuntu"},
		{"debian 13 without its changelog: fixed upstream", trixie, "CVE-2025-21642", Unknown, "no feed maps Debian 13 packages to fixes: add the debian-changelog of Debian 13's linux package"},
		{"debian 13 without its changelog: fixed in the running kernel", trixie, "CVE-2024-48876", FixedRunning, ""},
		{"fedora: fixed upstream", fedora, "CVE-2025-21642", Unknown, "add an OSV feed for Fedora"},
		{"fedora: the installed kernel carries the upstream fix", fedoraNewer, "CVE-2025-21642", FixedInstalled, "6.12.12-200.fc41"},
		// The changelog lists every bookworm upload: none names it, and
		// upstream fixed it in 6.8, not in 6.1.
		{"debian 12: no fix in its branch", bookworm, "CVE-2024-35843", NoFix, "no Debian:12/linux upload names it"},
	})
	// Nothing that no feed vouches for is counted as clean.
	for _, h := range []Host{ubuntu, trixie, fedora} {
		e, err := db.Evaluate(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range e.Findings {
			if f.State == NoFix && strings.Contains(f.Evidence, "fixed upstream in") {
				t.Errorf("%s %s: %s is no-fix on %q, which says a fix exists", h.Distro, h.Release, f.CVE, f.Evidence)
			}
		}
	}
}

// Upstream without a fix for the host's branch or any later one is the
// CNA's positive word: no-fix, whoever maps packages. A fix in a later
// branch only is no such word. (Every CVE of the sample has a later fix.)
func TestVerdictNoFixUpstream(t *testing.T) {
	kv := MustKernelVersion
	for _, tt := range []struct {
		name  string
		fixed []KernelVersion
		want  State
		with  string
	}{
		{"no fix anywhere", nil, NoFix, "no fix upstream"},
		{"fixed in an older branch only", []KernelVersion{kv("6.1.100")}, NoFix, "no fix upstream"},
		{"fixed in mainline later", []KernelVersion{kv("6.1.100"), kv("6.14")}, Unknown, "fixed upstream in 6.14; no feed maps Ubuntu 24.04 packages"},
	} {
		db := &DB{Vulns: []*Vuln{{ID: "CVE-2099-1", Upstream: &Upstream{Introduced: []KernelVersion{kv("6.1")}, Fixed: tt.fixed, From: "json"}}}, byID: map[string]int32{"CVE-2099-1": 0}}
		h := hostOf(t, ubuntu2404, "6.8.0-45-generic", "6.8.0-45.45", "6.8.12")
		e, err := db.Evaluate(h)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Findings) != 1 || e.Findings[0].State != tt.want || !strings.Contains(e.Findings[0].Evidence, tt.with) {
			t.Errorf("%s: findings %+v, want %s with %q", tt.name, e.Findings, tt.want, tt.with)
		}
	}
}

// RHEL and its rebuilds backport into an old base: upstream ranges never
// apply, so without their OSV data every CVE is unknown, never no-fix.
func TestExposureEnterpriseWithoutAdvisories(t *testing.T) {
	db := realDB(t)
	h := hostOf(t, inventory.OS{ID: "rocky", VersionID: "9.4", Family: "rpm"}, "5.14.0-427.13.1.el9_4.x86_64", "5.14.0-427.13.1.el9_4", "")
	e, err := db.Evaluate(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Counts) != 1 || e.Counts[Unknown] == 0 {
		t.Errorf("rocky 9.4 without advisories: counts %v, want every CVE unknown", e.Counts)
	}
}

func TestReleaseOf(t *testing.T) {
	for _, tt := range []struct {
		os   inventory.OS
		want string
	}{
		{inventory.OS{ID: "debian", VersionID: "12", Codename: "bookworm"}, "12"},
		{inventory.OS{ID: "debian", Codename: "bookworm"}, "12"},
		{inventory.OS{ID: "debian", Codename: "trixie"}, "13"},
		{inventory.OS{ID: "debian", Codename: "forky"}, "14"},
		{inventory.OS{ID: "debian", Codename: "bullseye"}, "11"},
		{inventory.OS{ID: "debian", Codename: "buster"}, "10"},
		{inventory.OS{ID: "debian", Codename: "trixie", PrettyName: "Debian GNU/Linux trixie/sid"}, "unstable"},
		{inventory.OS{ID: "debian", PrettyName: "Debian GNU/Linux trixie/sid"}, "unstable"},
		{inventory.OS{ID: "debian", Codename: "sid"}, "unstable"},
		{inventory.OS{ID: "debian", Codename: "hamm"}, "hamm"},
		{inventory.OS{ID: "ubuntu", VersionID: "24.04", Codename: "noble"}, "24.04"},
	} {
		if got := releaseOf(tt.os); got != tt.want {
			t.Errorf("releaseOf(%+v) = %q, want %q", tt.os, got, tt.want)
		}
	}
}

// A Debian testing/unstable host ("trixie/sid", no VERSION_ID) is judged by
// the changelog of unstable: its kernels are that one line of uploads,
// across upstream branches, so a later upload of a later branch is its
// upgrade. testdata/linux-sid.changelog: 6.11.9-1, 6.11.10-1, 6.12.9-1,
// 6.13~rc3-1~exp1 (experimental), 6.12.12-1 naming CVE-2025-38029.
func TestExposureDebianUnstable(t *testing.T) {
	db, err := Load(t.Context(), []FeedSpec{
		{FeedDebianChangelog, "testdata/linux-sid.changelog"},
		{FeedCNA, cnaSample},
	}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sid := hostOf(t, debianSid, "6.11.10-amd64", "6.11.10-1", "")
	sidNew := hostOf(t, debianSid, "6.12.12-amd64", "6.12.12-1", "")
	if sid.Release != "unstable" || db.trackFor(&sid) == nil || db.trackFor(&sid).Key != "Debian:unstable/linux" {
		t.Fatalf("trixie/sid host: release %q, track %v; want unstable, Debian:unstable/linux", sid.Release, db.trackFor(&sid))
	}
	checkStates(t, db, []stateCase{
		{"named by a later upload", sid, "CVE-2025-38029", UpdateNeeded, "6.12.12-1"},
		{"named by the running upload", sidNew, "CVE-2025-38029", FixedRunning, ""},
		// 6.11 has no fix upstream; 6.12.9 (upload 6.12.9-1) has it.
		{"fixed in a later branch's upload", sid, "CVE-2024-48876", UpdateNeeded, "6.12.9-1"},
		{"fixed upstream in 6.12.10: first upload 6.12.12-1", sid, "CVE-2025-21642", UpdateNeeded, "6.12.12-1"},
		{"fixed in the running kernel", sidNew, "CVE-2025-21642", FixedRunning, ""},
		// The changelog lists every upload: none has 6.12.77 yet.
		{"fixed upstream, not yet uploaded", sidNew, "CVE-2024-14027", NoFix, "not yet in a Debian:unstable/linux package"},
	})
	// A kernel of a branch no upload was made of is not in the line.
	other := hostOf(t, debianSid, "6.10.5-amd64", "6.10.5-1", "")
	checkStates(t, db, []stateCase{
		{"a branch the changelog does not list", other, "CVE-2025-21642", Unknown, "Debian:unstable/linux covers upstream 6.11, 6.12 only, not 6.10"},
	})

	// A testing host takes its release's changelog when unstable's is not
	// given; a codename without "/sid" is that release.
	rel, err := Load(t.Context(), []FeedSpec{{FeedDebianChangelog, writeChangelog(t, "unstable", "trixie")}, {FeedCNA, cnaSample}}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []Host{sid, hostOf(t, inventory.OS{ID: "debian", Codename: "trixie", Family: "deb"}, "6.11.10-amd64", "6.11.10-1", "")} {
		if tr := rel.trackFor(&h); tr == nil || tr.Key != "Debian:13/linux" {
			t.Errorf("host %s %s with trixie's changelog: track %v, want Debian:13/linux", h.Distro, h.Release, tr)
		}
	}
	// Without a changelog for it, the host is judged by the CNA data, and
	// what it cannot map is unknown.
	checkStates(t, realDB(t), []stateCase{
		{"sid without its changelog", sid, "CVE-2025-21642", Unknown, "no feed maps Debian unstable packages to fixes"},
	})
}

func writeChangelog(t *testing.T, old, new string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/linux-sid.changelog")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "changelog")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), ") "+old+";", ") "+new+";")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
