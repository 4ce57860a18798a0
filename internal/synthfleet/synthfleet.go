// Package synthfleet makes a synthetic Debian 12 fleet for benchmarks:
// feeds (a linux changelog of numbered uploads, kernel CNA records with
// upstream ranges only, NVD scores, a live patch catalog), a policy with
// windows and exceptions, and host inventories that run the newest
// uploads. benchplan plans it in process; benchfleet -plan sends it to a
// running stent-server through simulated agents.
package synthfleet

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/vuln"
)

// Config sizes the fleet and its feeds.
type Config struct {
	Hosts, CVEs, Uploads, Kernels int
	Seed                          uint64
}

// Now is the time the synthetic fleet's inventories were collected
// around: plan it at this time.
var Now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// Policy is a policy file for the fleet: the default and PCI DSS rules,
// three windows, two exceptions.
const Policy = `{
  "schema_version": 1,
  "presets": ["default", "pci-dss"],
  "windows": [
    {"name": "web", "when": "Tue 03:00-05:00 Europe/Berlin", "hosts": ["web-*"]},
    {"name": "db", "when": "second Sunday of the month 02:00-06:00 America/New_York", "hosts": ["db-*"]},
    {"name": "rest", "when": "Mon-Fri 22:00-02:00 UTC"}
  ],
  "exceptions": [
    {"cves": ["CVE-2026-10007", "CVE-2026-10042"], "hosts": ["db-*"], "rules": ["urgent"], "expires": "2026-12-31", "reason": "module not loaded"},
    {"cves": ["*"], "hosts": ["lab-1*"], "expires": "2026-12-01", "reason": "lab hosts, rebuilt weekly"}
  ]
}`

// upload i is linux 6.1.(100+i)-1, released i*4 days after 2025-12-01.
// UploadVersion is the package version of upload i.
func UploadVersion(i int) string { return fmt.Sprintf("6.1.%d-1", 100+i) }
func uploadDate(i int) time.Time {
	return time.Date(2025, 12, 1, 10, 0, 0, 0, time.UTC).AddDate(0, 0, 4*i)
}

// CVEID names synthetic CVE n.
func CVEID(n int) string { return fmt.Sprintf("CVE-2026-%d", 10000+n) }

// WriteFeeds writes the feeds into dir and returns their specs.
func WriteFeeds(dir string, c Config) ([]vuln.FeedSpec, error) {
	r := rand.New(rand.NewPCG(c.Seed, 2))
	inChangelog := c.CVEs * 4 / 5
	// The changelog, newest upload first.
	var cl strings.Builder
	perUpload := (inChangelog + c.Uploads - 1) / c.Uploads
	for i := c.Uploads - 1; i >= 0; i-- {
		urg := "medium"
		if i%3 == 0 {
			urg = "high"
		}
		fmt.Fprintf(&cl, "linux (%s) bookworm-security; urgency=%s\n\n  * New upstream stable update:\n", UploadVersion(i), urg)
		for k := i * perUpload; k < (i+1)*perUpload && k < inChangelog; k++ {
			fmt.Fprintf(&cl, "    - subsystem: fix a bug number %d (%s)\n", k, CVEID(k))
		}
		fmt.Fprintf(&cl, "\n -- Bench <bench@example.org>  %s\n\n", uploadDate(i).Format(time.RFC1123Z))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "changelog"), []byte(cl.String()), 0o644); err != nil {
		return nil, err
	}
	// CNA records: upstream ranges only (the changelog does not name them).
	cna := filepath.Join(dir, "cna", "cve", "published", "2026")
	if err := os.MkdirAll(cna, 0o755); err != nil {
		return nil, err
	}
	for k := inChangelog; k < c.CVEs; k++ {
		id := CVEID(k)
		fix := 100 + r.IntN(c.Uploads+20) // some fixed upstream after the newest upload
		rec := fmt.Sprintf(`{"dataType":"CVE_RECORD","dataVersion":"5.1","cveMetadata":{"cveId":%q,"state":"PUBLISHED","datePublished":"2026-06-01T00:00:00Z"},
"containers":{"cna":{"title":"synthetic","affected":[{"product":"Linux","vendor":"Linux","defaultStatus":"affected","versions":[
{"version":"5.15","status":"affected"},{"version":"0","lessThan":"5.15","status":"unaffected","versionType":"semver"},
{"version":"6.1.%d","lessThanOrEqual":"6.1.*","status":"unaffected","versionType":"semver"},
{"version":"6.8","lessThanOrEqual":"*","status":"unaffected","versionType":"original_commit_for_fix"}]}]}}}`, id, fix)
		if err := os.WriteFile(filepath.Join(cna, id+".json"), []byte(rec), 0o644); err != nil {
			return nil, err
		}
		dyad := fmt.Sprintf("5.15:%040x:6.1.%d:%040x\n5.15:%040x:6.8:%040x\n", k, fix, k+1, k, k+2)
		if err := os.WriteFile(filepath.Join(cna, id+".dyad"), []byte(dyad), 0o644); err != nil {
			return nil, err
		}
	}
	// NVD: scores for every other CVE, spread over the scale.
	vectors := []string{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", // 9.8
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", // 7.8
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H", // 5.5
		"CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N", // 2.5
	}
	var nvd strings.Builder
	nvd.WriteString(`{"format":"NVD_CVE","version":"2.0","vulnerabilities":[`)
	for k := 0; k < c.CVEs; k += 2 {
		if k > 0 {
			nvd.WriteString(",")
		}
		fmt.Fprintf(&nvd, `{"cve":{"id":%q,"published":"2026-05-01T00:00:00.000","metrics":{"cvssMetricV31":[{"source":"nvd@nist.gov","type":"Primary","cvssData":{"version":"3.1","vectorString":%q}}]}}}`, CVEID(k), vectors[r.IntN(len(vectors))])
	}
	nvd.WriteString("]}")
	if err := os.WriteFile(filepath.Join(dir, "nvd.json"), []byte(nvd.String()), 0o644); err != nil {
		return nil, err
	}
	// Live patches for the newest kernels, each fixing a few urgent CVEs of
	// the next upload.
	var lp strings.Builder
	lp.WriteString("[")
	for i := c.Uploads - 8; i < c.Uploads-1; i++ {
		if lp.Len() > 1 {
			lp.WriteString(",")
		}
		next := (i + 1) * perUpload
		fmt.Fprintf(&lp, `{"name":"lp-%d","cves":[%q,%q,%q],"kernel":{"release":"%s","version":%q},"released":%q}`,
			i, CVEID(next), CVEID(next+2), CVEID(next+4), Release(i), UploadVersion(i), uploadDate(i+1).Add(6*time.Hour).Format(time.RFC3339))
	}
	lp.WriteString("]")
	if err := os.WriteFile(filepath.Join(dir, "livepatches.json"), []byte(lp.String()), 0o644); err != nil {
		return nil, err
	}
	return []vuln.FeedSpec{
		{Kind: vuln.FeedDebianChangelog, Location: filepath.Join(dir, "changelog")},
		{Kind: vuln.FeedCNA, Location: filepath.Join(dir, "cna")},
		{Kind: vuln.FeedNVD, Location: filepath.Join(dir, "nvd.json")},
		{Kind: vuln.FeedLivePatch, Location: filepath.Join(dir, "livepatches.json")},
	}, nil
}

// Release is the kernel release of upload i.
func Release(i int) string { return fmt.Sprintf("6.1.0-%d-amd64", i) }

var roles = []string{"web", "db", "app", "cache", "lab"}

// MakeFleet builds the inventories: each host runs one of the newest
// c.Kernels uploads, has installed up to two newer ones, sometimes a live
// patch, stale processes and old kernels.
func MakeFleet(c Config) []*inventory.Inventory {
	r := rand.New(rand.NewPCG(c.Seed, 3))
	invs := make([]*inventory.Inventory, c.Hosts)
	boot := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for n := range invs {
		run := c.Uploads - 1 - r.IntN(c.Kernels)
		newest := run + r.IntN(3)
		if newest >= c.Uploads {
			newest = c.Uploads - 1
		}
		inv := &inventory.Inventory{
			SchemaVersion: inventory.SchemaVersion,
			Hostname:      fmt.Sprintf("%s-%d", roles[n%len(roles)], n),
			CollectedAt:   time.Date(2026, 11, 20, 11, 0, 0, 0, time.UTC),
			OS:            inventory.OS{ID: "debian", VersionID: "12", Codename: "bookworm", Family: "deb"},
			Kernel: inventory.Kernel{Release: Release(run), PackageVersion: UploadVersion(run), SourcePackage: "linux",
				BootTime: boot.Add(time.Duration(r.IntN(1000)) * time.Hour)},
			Metapackages: []inventory.Package{{Name: "linux-image-amd64", Version: UploadVersion(newest)}},
			NewestKernel: Release(newest),
			LivePatches:  []inventory.LivePatch{},
		}
		for i := run - 2; i <= newest; i++ {
			inv.KernelPackages = append(inv.KernelPackages, inventory.Package{Name: "linux-image-" + Release(i), Version: UploadVersion(i), Release: Release(i), Running: i == run})
		}
		if r.IntN(5) == 0 && run < c.Uploads-1 && run >= c.Uploads-8 {
			inv.LivePatches = append(inv.LivePatches, inventory.LivePatch{Name: fmt.Sprintf("lp-%d", run), Enabled: true, Manifest: true,
				CVEs: []string{CVEID((run + 1) * ((c.CVEs*4/5 + c.Uploads - 1) / c.Uploads))}})
		}
		if r.IntN(20) == 0 {
			inv.StaleProcesses = []inventory.Process{{PID: 100 + n%1000, Comm: "nginx", Unit: "nginx.service", Libraries: []string{"/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)"}}}
		}
		invs[n] = inv
	}
	return invs
}
