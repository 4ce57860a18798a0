// Command benchplan measures exposure plus planning for a synthetic fleet:
// by default 100,000 Debian 12 hosts over 5,000 CVEs (4,000 named by a
// synthetic linux changelog of 100 uploads, 1,000 kernel CNA records with
// upstream ranges only), NVD scores for half of them, a live patch catalog,
// maintenance windows and exceptions. It prints the time of each phase and
// the peak memory (VmHWM from /proc/self/status, and the Go heap).
//
//	go run ./internal/tools/benchplan [-hosts 100000] [-cves 5000] [-kernels 16]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/internal/synthfleet"
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

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("benchplan", flag.ContinueOnError)
	var c synthfleet.Config
	fs.IntVar(&c.Hosts, "hosts", 100000, "synthetic hosts")
	fs.IntVar(&c.CVEs, "cves", 5000, "synthetic CVEs (4/5 in the changelog, 1/5 in CNA records)")
	fs.IntVar(&c.Uploads, "uploads", 100, "linux uploads in the synthetic changelog")
	fs.IntVar(&c.Kernels, "kernels", 16, "distinct running kernels in the fleet (the newest ones)")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed")
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
	specs, err := synthfleet.WriteFeeds(dir, c)
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
	pol, err := policy.Parse("bench", strings.NewReader(synthfleet.Policy))
	if err != nil {
		return err
	}
	t0 = time.Now()
	invs := synthfleet.MakeFleet(c)
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
	fp, err := policy.Plan(policy.Input{Inventories: invs, DB: db, Policy: pol, Now: synthfleet.Now})
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
	fmt.Fprintf(out, "hosts %d, CVEs in database %d, distinct running kernels %d, GOMAXPROCS %d\n", len(invs), len(db.Vulns), c.Kernels, runtime.GOMAXPROCS(0))
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
	return livePlan(ctx, out, invs, specs, pol)
}

// livePlan times what stent-server's live plan does (server/liveplan.go):
// hosts grouped by kernel situation, one policy.Plan call per group.
// After a feed update every group is planned again; after one host's new
// inventory, its group only (the largest group here: the worst case).
func livePlan(ctx context.Context, out io.Writer, invs []*inventory.Inventory, specs []vuln.FeedSpec, pol *policy.Policy) error {
	t0 := time.Now()
	groups := map[string][]*inventory.Inventory{}
	for _, inv := range invs {
		key, err := policy.Situation(inv)
		if err != nil {
			return err
		}
		groups[key] = append(groups[key], inv)
	}
	tGroup := time.Since(t0)
	now := synthfleet.Now
	var largest []*inventory.Inventory
	// A new database, as after a feed update: no evaluation is reused.
	fresh, err := vuln.Load(ctx, specs, vuln.LoadOptions{})
	if err != nil {
		return err
	}
	cpu0 := cpuTime()
	t0 = time.Now()
	for _, g := range groups {
		if _, err := policy.Plan(policy.Input{Inventories: g, DB: fresh, Policy: pol, Now: now}); err != nil {
			return err
		}
		if len(g) > len(largest) {
			largest = g
		}
	}
	tAll, cpuAll := time.Since(t0), cpuTime()-cpu0
	t0 = time.Now()
	if _, err := policy.Plan(policy.Input{Inventories: largest, DB: fresh, Policy: pol, Now: now}); err != nil {
		return err
	}
	tOne := time.Since(t0)
	fmt.Fprintf(out, "live plan: %d kernel situation groups (grouping %.3f s)\n", len(groups), tGroup.Seconds())
	fmt.Fprintf(out, "  after a feed update   %8.3f s  (every group, one Plan call each; %.3f s of CPU)\n", tAll.Seconds(), cpuAll.Seconds())
	fmt.Fprintf(out, "  after one inventory   %8.3f s  (its group: the largest, %d hosts)\n", tOne.Seconds(), len(largest))
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
