// Command benchplan measures exposure plus planning for a synthetic fleet:
// by default 100,000 Debian 12 hosts over 5,000 CVEs (4,000 named by a
// synthetic linux changelog of 100 uploads, 1,000 kernel CNA records with
// upstream ranges only), NVD scores for half of them, a live patch catalog,
// maintenance windows and exceptions. It prints the time of each phase and
// the peak memory (VmHWM from /proc/self/status, and the Go heap).
//
//	go run ./policy/internal/benchplan [-hosts 100000] [-cves 5000] [-kernels 16]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchplan:", err)
		os.Exit(1)
	}
}

type config struct {
	hosts, cves, uploads, kernels int
	seed                          uint64
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("benchplan", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.hosts, "hosts", 100000, "synthetic hosts")
	fs.IntVar(&c.cves, "cves", 5000, "synthetic CVEs (4/5 in the changelog, 1/5 in CNA records)")
	fs.IntVar(&c.uploads, "uploads", 100, "linux uploads in the synthetic changelog")
	fs.IntVar(&c.kernels, "kernels", 16, "distinct running kernels in the fleet (the newest ones)")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the plan phase to this file")
	memprofile := fs.String("memprofile", "", "write an allocation profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchplan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	specs, err := writeFeeds(dir, c)
	if err != nil {
		return err
	}
	tFeeds := time.Since(t0)
	t0 = time.Now()
	db, err := vuln.Load(ctx, specs, vuln.LoadOptions{})
	if err != nil {
		return err
	}
	tLoad := time.Since(t0)
	pol, err := policy.Parse("bench", strings.NewReader(benchPolicy))
	if err != nil {
		return err
	}
	t0 = time.Now()
	invs := makeFleet(c)
	tFleet := time.Since(t0)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	hwmBefore := vmHWM()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
	}
	cpu0 := cpuTime()
	t0 = time.Now()
	fp, err := policy.Plan(policy.Input{Inventories: invs, DB: db, Policy: pol, Now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		return err
	}
	tPlan := time.Since(t0)
	cpuPlan := cpuTime() - cpu0
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	actions, exposed := 0, 0
	situations := map[*vuln.Finding]bool{}
	for i := range fp.Hosts {
		actions += len(fp.Hosts[i].Actions)
		exposed += len(fp.Hosts[i].Exposure)
		if len(fp.Hosts[i].Exposure) > 0 {
			situations[&fp.Hosts[i].Exposure[0]] = true
		}
	}
	fmt.Fprintf(out, "hosts %d, CVEs in database %d, distinct running kernels %d, GOMAXPROCS %d\n", len(invs), len(db.Vulns), c.kernels, runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "write synthetic feeds  %8.3f s\n", tFeeds.Seconds())
	fmt.Fprintf(out, "load and index feeds   %8.3f s\n", tLoad.Seconds())
	fmt.Fprintf(out, "generate inventories   %8.3f s\n", tFleet.Seconds())
	fmt.Fprintf(out, "exposure + plan        %8.3f s  (%.1f µs per host; %.3f s of CPU)\n", tPlan.Seconds(), float64(tPlan.Microseconds())/float64(len(invs)), cpuPlan.Seconds())
	fmt.Fprintf(out, "(host, CVE) exposures  %d (%d distinct exposure lists), actions %d\n", exposed, len(situations), actions)
	for _, fr := range fp.Fleet {
		fmt.Fprintf(out, "  %-15s %v\n", fr.Rule, fr.Hosts)
	}
	fmt.Fprintf(out, "heap in use            %8.1f MiB before plan, %.1f MiB after; %.1f MiB allocated by the plan\n",
		mib(before.HeapInuse), mib(after.HeapInuse), mib(after.TotalAlloc-before.TotalAlloc))
	fmt.Fprintf(out, "peak RSS (VmHWM)       %8.1f MiB (%.1f MiB before the plan)\n", float64(vmHWM())/1024, float64(hwmBefore)/1024)
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	runtime.KeepAlive(fp)
	return nil
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// vmHWM is the peak resident set size in KiB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}

const benchPolicy = `{
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
func uploadVersion(i int) string { return fmt.Sprintf("6.1.%d-1", 100+i) }
func uploadDate(i int) time.Time {
	return time.Date(2025, 12, 1, 10, 0, 0, 0, time.UTC).AddDate(0, 0, 4*i)
}

func cveID(n int) string { return fmt.Sprintf("CVE-2026-%d", 10000+n) }

func writeFeeds(dir string, c config) ([]vuln.FeedSpec, error) {
	r := rand.New(rand.NewPCG(c.seed, 2))
	inChangelog := c.cves * 4 / 5
	// The changelog, newest upload first.
	var cl strings.Builder
	perUpload := (inChangelog + c.uploads - 1) / c.uploads
	for i := c.uploads - 1; i >= 0; i-- {
		urg := "medium"
		if i%3 == 0 {
			urg = "high"
		}
		fmt.Fprintf(&cl, "linux (%s) bookworm-security; urgency=%s\n\n  * New upstream stable update:\n", uploadVersion(i), urg)
		for k := i * perUpload; k < (i+1)*perUpload && k < inChangelog; k++ {
			fmt.Fprintf(&cl, "    - subsystem: fix a bug number %d (%s)\n", k, cveID(k))
		}
		fmt.Fprintf(&cl, "\n -- Bench <bench@example.org>  %s\n\n", uploadDate(i).Format(time.RFC1123Z))
	}
	if err := os.WriteFile(filepath.Join(dir, "changelog"), []byte(cl.String()), 0o644); err != nil {
		return nil, err
	}
	// CNA records: upstream ranges only (the changelog does not name them).
	cna := filepath.Join(dir, "cna", "cve", "published", "2026")
	if err := os.MkdirAll(cna, 0o755); err != nil {
		return nil, err
	}
	for k := inChangelog; k < c.cves; k++ {
		id := cveID(k)
		fix := 100 + r.IntN(c.uploads+20) // some fixed upstream after the newest upload
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
	for k := 0; k < c.cves; k += 2 {
		if k > 0 {
			nvd.WriteString(",")
		}
		fmt.Fprintf(&nvd, `{"cve":{"id":%q,"published":"2026-05-01T00:00:00.000","metrics":{"cvssMetricV31":[{"source":"nvd@nist.gov","type":"Primary","cvssData":{"version":"3.1","vectorString":%q}}]}}}`, cveID(k), vectors[r.IntN(len(vectors))])
	}
	nvd.WriteString("]}")
	if err := os.WriteFile(filepath.Join(dir, "nvd.json"), []byte(nvd.String()), 0o644); err != nil {
		return nil, err
	}
	// Live patches for the newest kernels, each fixing a few urgent CVEs of
	// the next upload.
	var lp strings.Builder
	lp.WriteString("[")
	for i := c.uploads - 8; i < c.uploads-1; i++ {
		if lp.Len() > 1 {
			lp.WriteString(",")
		}
		next := (i + 1) * perUpload
		fmt.Fprintf(&lp, `{"name":"lp-%d","cves":[%q,%q,%q],"kernel":{"release":"%s","version":%q},"released":%q}`,
			i, cveID(next), cveID(next+2), cveID(next+4), release(i), uploadVersion(i), uploadDate(i+1).Add(6*time.Hour).Format(time.RFC3339))
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

func release(i int) string { return fmt.Sprintf("6.1.0-%d-amd64", i) }

var roles = []string{"web", "db", "app", "cache", "lab"}

// makeFleet builds the inventories: each host runs one of the newest
// c.kernels uploads, has installed up to two newer ones, sometimes a live
// patch, stale processes and old kernels.
func makeFleet(c config) []*inventory.Inventory {
	r := rand.New(rand.NewPCG(c.seed, 3))
	invs := make([]*inventory.Inventory, c.hosts)
	boot := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for n := range invs {
		run := c.uploads - 1 - r.IntN(c.kernels)
		newest := run + r.IntN(3)
		if newest >= c.uploads {
			newest = c.uploads - 1
		}
		inv := &inventory.Inventory{
			SchemaVersion: inventory.SchemaVersion,
			Hostname:      fmt.Sprintf("%s-%d", roles[n%len(roles)], n),
			CollectedAt:   time.Date(2026, 11, 20, 11, 0, 0, 0, time.UTC),
			OS:            inventory.OS{ID: "debian", VersionID: "12", Codename: "bookworm", Family: "deb"},
			Kernel: inventory.Kernel{Release: release(run), PackageVersion: uploadVersion(run), SourcePackage: "linux",
				BootTime: boot.Add(time.Duration(r.IntN(1000)) * time.Hour)},
			Metapackages: []inventory.Package{{Name: "linux-image-amd64", Version: uploadVersion(newest)}},
			NewestKernel: release(newest),
			LivePatches:  []inventory.LivePatch{},
		}
		for i := run - 2; i <= newest; i++ {
			inv.KernelPackages = append(inv.KernelPackages, inventory.Package{Name: "linux-image-" + release(i), Version: uploadVersion(i), Release: release(i), Running: i == run})
		}
		if r.IntN(5) == 0 && run < c.uploads-1 && run >= c.uploads-8 {
			inv.LivePatches = append(inv.LivePatches, inventory.LivePatch{Name: fmt.Sprintf("lp-%d", run), Enabled: true, Manifest: true,
				CVEs: []string{cveID((run + 1) * ((c.cves*4/5 + c.uploads - 1) / c.uploads))}})
		}
		if r.IntN(20) == 0 {
			inv.StaleProcesses = []inventory.Process{{PID: 100 + n%1000, Comm: "nginx", Unit: "nginx.service", Libraries: []string{"/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)"}}}
		}
		invs[n] = inv
	}
	return invs
}
