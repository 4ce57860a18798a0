// Command benchfleet measures stent-server with a simulated fleet on
// loopback: it starts the server binary as its own process, enrolls N
// simulated agents (the real agent code over a simulated runtime), and
// measures idle CPU with every agent connected, sustained check-ins per
// second, and the time from publishing a bundle to every host having
// applied it through a staged rollout. Run by `make bench-fleet`; the last
// line of output is the summary.
//
// With -plan (`make bench-fleet-plan`) it measures the live plan instead
// (plan.go): the agents send the synthetic fleet's inventories and the
// server keeps its feeds.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fleetsim"
)

type options struct {
	n           int
	serverBin   string
	db          string
	checkins    time.Duration // interval during the check-in phase
	measure     time.Duration
	idle        time.Duration
	healthDelay time.Duration
	spread      time.Duration
	applyDelay  time.Duration
	moduleSize  int
	keep        bool
	profile     string // folder for CPU profiles of both processes
	plan        bool   // measure the live plan (plan.go)
	memLimit    string // the server's --memory-limit
	report      bool   // -plan: also the report of every host (plan.go)
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 10000, "simulated agents")
	flag.StringVar(&o.serverBin, "server-bin", "bin/stent-server", "stent-server binary")
	flag.StringVar(&o.db, "db", "", "PostgreSQL DSN (default: SQLite)")
	flag.DurationVar(&o.checkins, "checkin-interval", time.Second, "check-in interval during the throughput phase")
	flag.DurationVar(&o.measure, "measure", 20*time.Second, "length of the throughput measurement")
	flag.DurationVar(&o.idle, "idle", 65*time.Second, "length of the idle CPU measurement (at least one check-in interval, 60 s)")
	flag.DurationVar(&o.healthDelay, "health-delay", 5*time.Second, "agents' wait after applying before the health check-in")
	flag.DurationVar(&o.spread, "spread", time.Second, "agents' random delay before acting on a new desired state")
	flag.DurationVar(&o.applyDelay, "apply-delay", 200*time.Millisecond, "simulated apply (transition) time")
	flag.IntVar(&o.moduleSize, "module-size", 64<<10, "size of the simulated live patch module in the bundle")
	flag.BoolVar(&o.keep, "keep", false, "keep the server's data folder")
	flag.StringVar(&o.profile, "profile", "", "write CPU profiles of the server and the simulator for each phase to this folder")
	flag.BoolVar(&o.plan, "plan", false, "measure the live plan instead: the agents send the synthetic fleet's inventories (internal/synthfleet), the server keeps its feeds; times the re-plan after a feed update, one host's inventory until GET /v1/admin/plan shows it, the dashboard's pages, and the server's peak RSS")
	flag.StringVar(&o.memLimit, "server-memory-limit", "", "the server's --memory-limit (soft limit of its memory, such as 850MiB); empty: none")
	flag.BoolVar(&o.report, "report", false, "with -plan: also time the compliance report of every host (stent fleet report's api.Client.FleetReport) and the memory it takes here")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	do := run
	if o.plan {
		do = runPlan
	}
	if err := do(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchfleet: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.0")}, args...)...)
}

// workDirs makes the benchmark's two folders: the simulated hosts' (in
// memory when it can: ten thousand hosts' file churn on a shared disk
// measures the disk) and the server's (on disk, as in production; kept
// with -keep). cleanup removes what is not kept.
func workDirs(o options) (agentsDir, dir string, cleanup func(), err error) {
	tmp := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		tmp = "/dev/shm"
	}
	if agentsDir, err = os.MkdirTemp(tmp, "benchfleet-agents"); err != nil {
		return "", "", nil, err
	}
	if dir, err = os.MkdirTemp("", "benchfleet"); err != nil {
		os.RemoveAll(agentsDir)
		return "", "", nil, err
	}
	if o.keep {
		logf("server data and log in %s", dir)
	}
	return agentsDir, dir, func() {
		os.RemoveAll(agentsDir)
		if !o.keep {
			os.RemoveAll(dir)
		}
	}, nil
}

func run(ctx context.Context, o options) error {
	agentsDir, dir, cleanup, err := workDirs(o)
	if err != nil {
		return err
	}
	defer cleanup()
	sp, err := startServer(ctx, o, dir, nil)
	if err != nil {
		return err
	}
	defer sp.stop()
	pid, url, hc, admin, priv, pub := sp.pid, sp.url, sp.hc, sp.admin, sp.priv, sp.pub
	mport, fp := sp.mport, sp.fp
	// profile records both processes' CPU profiles for d (or until the
	// returned stop is called) into o.profile/<name>-{server,sim}.pprof.
	profile := func(name string, d time.Duration) (stop func()) {
		if o.profile == "" {
			return func() {}
		}
		f, _ := os.Create(filepath.Join(o.profile, name+"-sim.pprof"))
		pprof.StartCPUProfile(f)
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", mport, int(d.Seconds())))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			g, _ := os.Create(filepath.Join(o.profile, name+"-server.pprof"))
			io.Copy(g, resp.Body)
			g.Close()
		}()
		return func() { pprof.StopCPUProfile(); f.Close(); <-done }
	}

	et, err := admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "bench", TTL: api.Duration(time.Hour)})
	if err != nil {
		return err
	}
	const kernel = "6.1.0-56-amd64"
	start := time.Now()
	fleet, err := fleetsim.Enroll(ctx, fleetsim.Config{
		Server: url, Fingerprint: fp, EnrollToken: et.Secret, N: o.n, Kernel: kernel, Keys: bundle.NewKeyring(pub),
		Dir: agentsDir, HealthDelay: o.healthDelay, Spread: o.spread, ApplyDelay: o.applyDelay,
		MaxBackoff: 10 * time.Second, SpreadSources: true, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	logf("enrolled %d agents in %.1f s", o.n, time.Since(start).Seconds())
	start = time.Now()
	fleet.Start(ctx)
	defer fleet.Stop()
	if err := waitFor(ctx, 5*time.Minute, func() (bool, error) {
		st, err := admin.Fleet(ctx)
		if err != nil {
			return false, err
		}
		return st.ByKernel[kernel] == o.n && st.Online == o.n, nil
	}); err != nil {
		return fmt.Errorf("agents connecting: %w", err)
	}
	logf("all %d agents checked in and holding a long-poll after %.1f s", o.n, time.Since(start).Seconds())

	// Idle: every agent connected, check-ins every 60 s.
	time.Sleep(3 * time.Second)
	cpu0, t0 := procCPU(pid), time.Now()
	time.Sleep(o.idle)
	idleCPU := (procCPU(pid) - cpu0) / time.Since(t0).Seconds() * 100
	logf("idle: server CPU %.1f%% of one core over %.0f s with %d agents connected (60 s check-ins), RSS %d MB", idleCPU, o.idle.Seconds(), o.n, rssMB(pid, "VmRSS"))

	// Throughput: ask for check-ins every o.checkins and count what the
	// server records.
	if _, err := admin.PutSettings(ctx, api.Settings{CheckinInterval: api.Duration(o.checkins)}); err != nil {
		return err
	}
	time.Sleep(2*o.checkins + 3*time.Second)
	c0, t1 := scrapeCounter(ctx, hc, url, "stent_server_checkins_total"), time.Now()
	cpu1, sim1 := procCPU(pid), procCPU(os.Getpid())
	stopProf := profile("checkins", o.measure)
	time.Sleep(o.measure)
	stopProf()
	c1, el := scrapeCounter(ctx, hc, url, "stent_server_checkins_total"), time.Since(t1).Seconds()
	rate := (c1 - c0) / el
	loadCPU := (procCPU(pid) - cpu1) / el * 100
	simCPU := (procCPU(os.Getpid()) - sim1) / el * 100
	logf("check-ins: %.0f/s sustained over %.0f s (offered %.0f/s), server CPU %.0f%%, simulator CPU %.0f%%, RSS %d MB",
		rate, el, float64(o.n)/o.checkins.Seconds(), loadCPU, simCPU, rssMB(pid, "VmRSS"))
	if _, err := admin.PutSettings(ctx, api.Settings{CheckinInterval: api.Duration(60 * time.Second)}); err != nil {
		return err
	}
	time.Sleep(5 * time.Second)

	// Publish -> 100% applied.
	data, err := fleetsim.MakeBundle(priv, "lp_bench_cve_2024_1086", kernel, 1, true, o.moduleSize)
	if err != nil {
		return err
	}
	stopProf = profile("rollout", 60*time.Second)
	cpu2, sim2 := procCPU(pid), procCPU(os.Getpid())
	start = time.Now()
	info, err := admin.PublishBundle(ctx, data)
	if err != nil {
		return err
	}
	r, err := admin.CreateRollout(ctx, api.RolloutRequest{Bundle: info.SHA256})
	if err != nil {
		return err
	}
	logf("published %d-byte bundle; rollout %s: %d hosts, canary %d, waves %v", len(data), r.ID, r.Counts.Target, r.Canary, r.Waves)
	last := ""
	err = waitFor(ctx, 10*time.Minute, func() (bool, error) {
		cur, err := admin.Rollout(ctx, r.ID, false)
		if err != nil {
			return false, err
		}
		r = cur
		line := fmt.Sprintf("%s wave %d: %d applied, %d healthy, %d failed", r.State, r.Wave, r.Counts.Applied, r.Counts.Healthy, r.Counts.Failed)
		if line != last {
			logf("  +%5.1f s  %s", time.Since(start).Seconds(), line)
			last = line
		}
		if r.State == api.RolloutHalted {
			return false, errors.New("rollout halted: " + r.Reason)
		}
		return r.Counts.Applied == r.Counts.Target, nil
	})
	if err != nil {
		return err
	}
	applied := time.Since(start).Seconds()
	logf("rollout: server CPU %.0f%%, simulator CPU %.0f%% on average", (procCPU(pid)-cpu2)/applied*100, (procCPU(os.Getpid())-sim2)/applied*100)
	stopProf()
	twice := 0
	for _, h := range fleet.Hosts {
		if h.Runtime.Applies("lp_bench_cve_2024_1086") != 1 {
			twice++
		}
	}
	peak := rssMB(pid, "VmHWM")
	logf("hosts that did not apply exactly once: %d; server peak RSS %d MB", twice, peak)
	fmt.Printf("fleet: %d agents, publish->100%% applied in %.1f s, %.0f check-ins/s, server RSS %d MB\n", o.n, applied, rate, peak)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitFingerprint(ctx context.Context, logPath, addr string) (string, error) {
	var fp string
	err := waitFor(ctx, 30*time.Second, func() (bool, error) {
		b, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.Index(line, "fingerprint sha256:"); i >= 0 {
				fp = strings.TrimSpace(line[i+len("fingerprint "):])
			}
		}
		if fp == "" {
			return false, nil
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return "", fmt.Errorf("server did not start: %w\n%s", err, b)
	}
	return fp, nil
}

func waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// procCPU returns the process's user+system CPU seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func rssMB(pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb / 1024
		}
	}
	return 0
}

func scrapeCounter(ctx context.Context, hc *http.Client, base, name string) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+api.PathMetrics, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
