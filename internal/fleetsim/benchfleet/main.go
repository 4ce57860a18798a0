// Command benchfleet measures stent-server with a simulated fleet on
// loopback: it starts the server binary as its own process, enrolls N
// simulated agents (the real agent code over a simulated runtime), and
// measures idle CPU with every agent connected, sustained check-ins per
// second, and the time from publishing a bundle to every host having
// applied it through a staged rollout. Run by `make bench-fleet`; the last
// line of output is the summary.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
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
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchfleet: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.0")}, args...)...)
}

func run(ctx context.Context, o options) error {
	// The simulated hosts' downloads go to memory when it can: ten
	// thousand hosts' file churn on a shared disk measures the disk.
	tmp := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		tmp = "/dev/shm"
	}
	agentsDir, err := os.MkdirTemp(tmp, "benchfleet-agents")
	if err != nil {
		return err
	}
	defer os.RemoveAll(agentsDir)
	// The server's database stays on disk, as in production.
	dir, err := os.MkdirTemp("", "benchfleet")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	} else {
		logf("server data and log in %s", dir)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// The publisher's key: the server trusts its public half (--keys-dir),
	// the simulated hosts the same.
	kf, err := bundle.GenerateKey(filepath.Join(dir, "keys"), "bench", false)
	if err != nil {
		return err
	}
	priv, err := bundle.LoadPrivateKey(kf.Private)
	if err != nil {
		return err
	}
	pub := priv.Public().(ed25519.PublicKey)
	args := []string{"--data-dir", filepath.Join(dir, "server"), "--listen", addr, "--checkin-interval", "60s", "--log-level", "info", "--engine-tick", "250ms",
		"--keys-dir", filepath.Dir(kf.Public)}
	if o.db != "" {
		args = append(args, "--db", o.db)
	}
	var mport int
	if o.profile != "" {
		if mport, err = freePort(); err != nil {
			return err
		}
		args = append(args, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", mport))
		os.MkdirAll(o.profile, 0o755)
	}
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
	srv := exec.Command(o.serverBin, args...)
	srvLog, _ := os.Create(filepath.Join(dir, "server.log"))
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start %s: %w (build it with make build)", o.serverBin, err)
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	pid := srv.Process.Pid
	fp, err := waitFingerprint(ctx, srvLog.Name(), addr)
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(dir, "server", "admin.token"))
	if err != nil {
		return err
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: fp})
	if err != nil {
		return err
	}
	url := "https://" + addr
	admin := &api.Client{BaseURL: url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	logf("stent-server pid %d on %s (%s)", pid, addr, map[bool]string{true: "PostgreSQL", false: "SQLite"}[o.db != ""])

	var et api.Token
	if err := admin.Do(ctx, http.MethodPost, api.PathEnrollToken, api.EnrollTokenRequest{Name: "bench", TTL: api.Duration(time.Hour)}, &et); err != nil {
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
		var st api.FleetStatus
		if err := admin.Get(ctx, api.PathFleet, &st); err != nil {
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
	if err := admin.Do(ctx, http.MethodPut, api.PathSettings, api.Settings{CheckinInterval: api.Duration(o.checkins)}, nil); err != nil {
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
	if err := admin.Do(ctx, http.MethodPut, api.PathSettings, api.Settings{CheckinInterval: api.Duration(60 * time.Second)}, nil); err != nil {
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
	var info api.BundleInfo
	if err := admin.Do(ctx, http.MethodPost, api.PathAdminBundle, data, &info); err != nil {
		return err
	}
	var r api.Rollout
	if err := admin.Do(ctx, http.MethodPost, api.PathRollouts, api.RolloutRequest{Bundle: info.SHA256}, &r); err != nil {
		return err
	}
	logf("published %d-byte bundle; rollout %s: %d hosts, canary %d, waves %v", len(data), r.ID, r.Counts.Target, r.Canary, r.Waves)
	last := ""
	err = waitFor(ctx, 10*time.Minute, func() (bool, error) {
		if err := admin.Get(ctx, api.PathRollouts+"/"+r.ID+"?hosts=0", &r); err != nil {
			return false, err
		}
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
