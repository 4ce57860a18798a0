// Command benchfactory measures the patch factory (make bench-factory):
// from a one-fix upload's appearance to the canary hosts having its live
// patch applied, for several running kernel builds.
//
// Each run starts a stent-server in this process (its debian-changelog feed
// the new upload's changelog, its policy listing apply-livepatch as
// unattended, trusting a new factory key), boots one QEMU canary guest per
// kernel build (-kernels release=package-version) with the stent agent
// enrolled in the canary channel and the modules the fixes patch loaded,
// and waits for their inventories. Then the clock starts: the worker runs
// factory.Worker.Run(-from, -to) with the real fixes, builder and QEMU smoke
// test, -parallel kernel builds at once, and the clock stops when every
// guest has the live patch enabled. It prints each job's steps and the
// total, and the load average before and after.
//
// Warm caches, as a build machine that has worked on earlier uploads has
// them: the kernel packages, the linux-source packages and their trees,
// and each kernel's prepared tree (a first run makes them, untimed, with
// -warm). Not warm: the unpatched objects of the fix's files, which the
// builder keeps per tree; -cold-objects (default) removes them before each
// timed run, since a new fix's files have usually not been compiled yet.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/factory"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/loadavg"
	"github.com/stent-dev/stent/internal/vmtest"
	"github.com/stent-dev/stent/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "benchfactory:", err)
		os.Exit(1)
	}
}

type kernel struct{ release, version string }

type config struct {
	from, to    string
	kernels     []kernel
	modules     []string
	objects     []string
	coldObjects bool
	verbose     bool
	settle      time.Duration
	cache       string
	logDir      string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchfactory", flag.ContinueOnError)
	from := fs.String("from", "6.1.192-2", "the upload before the new one (linux-source package version)")
	to := fs.String("to", "6.1.192-3", "the new upload")
	kernels := fs.String("kernels", "6.1.0-55-amd64=6.1.192-1,6.1.0-56-amd64=6.1.192-2", "the canary hosts' kernel builds, release=package version, comma-separated")
	parallel := fs.String("parallel", "2,1", "Worker.Parallel of each timed run, comma-separated")
	modules := fs.String("modules", "nfsd,ext4", "modules loaded in the canary guests (those the fixes patch)")
	objects := fs.String("objects", "fs/nfsd/nfs4state.o,fs/ext4/mballoc.o", "the fixes' objects whose unpatched copies -cold-objects removes")
	cold := fs.Bool("cold-objects", true, "remove the builder's unpatched copies of -objects before each timed run")
	warm := fs.Bool("warm", true, "first make the caches warm (sources, trees, kernels), untimed")
	verbose := fs.Bool("v", false, "print the worker's and the smoke tests' progress")
	settle := fs.Duration("settle", 20*time.Second, "wait this long after the canaries' first inventories before starting the clock (their agents' start-up is done; a canary host waits idle for its patch)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config{from: *from, to: *to, modules: split(*modules), objects: split(*objects), coldObjects: *cold, verbose: *verbose, settle: *settle}
	for _, kv := range split(*kernels) {
		r, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-kernels %q: want release=package-version, e.g. 6.1.0-56-amd64=6.1.192-2", kv)
		}
		cfg.kernels = append(cfg.kernels, kernel{r, v})
	}
	var pars []int
	for _, p := range split(*parallel) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return fmt.Errorf("-parallel %q: want numbers of at least 1", p)
		}
		pars = append(pars, n)
	}
	var err error
	if cfg.cache, err = kpkg.CacheDir(); err != nil {
		return err
	}
	if cfg.logDir, err = os.MkdirTemp("", "benchfactory-"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "benchfactory: upload %s over %s, kernel builds %s; cache %s, guest logs %s\n", cfg.to, cfg.from, *kernels, cfg.cache, cfg.logDir)
	if *warm {
		start := time.Now()
		if err := warmUp(ctx, cfg, stderr); err != nil {
			return fmt.Errorf("warm the caches: %w", err)
		}
		fmt.Fprintf(stdout, "warm-up (untimed): %.1fs\n", time.Since(start).Seconds())
	}
	for i, p := range pars {
		if err := measure(ctx, cfg, i+1, p, stdout, stderr); err != nil {
			return fmt.Errorf("run %d (parallel %d): %w", i+1, p, err)
		}
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// warmUp fetches the kernels, extracts the sources of every upload
// involved and prepares each kernel's tree: what a build machine that has
// worked on earlier uploads has cached.
func warmUp(ctx context.Context, cfg config, progress io.Writer) error {
	if !cfg.verbose {
		progress = io.Discard
	}
	for _, k := range cfg.kernels {
		if _, err := factory.Extract(ctx, k.version, cfg.to, factory.Options{Cache: cfg.cache, Progress: progress}); err != nil {
			return err
		}
		kp, err := kpkg.Fetch(ctx, k.release, progress)
		if err != nil {
			return err
		}
		src, err := build.Source(ctx, cfg.cache, k.version, progress)
		if err != nil {
			return err
		}
		if _, err := build.PrepareTree(ctx, cfg.cache, src, "", k.release, kp.Config, progress); err != nil {
			return err
		}
	}
	return nil
}

// coldObjects removes the builder's unpatched copies of the fixes' objects
// from each kernel's tree, under the tree's lock.
func coldObjects(ctx context.Context, cfg config) error {
	for _, k := range cfg.kernels {
		dir := filepath.Join(cfg.cache, "trees", k.release)
		lock := filepath.Join(cfg.cache, "locks", "tree-"+strings.ReplaceAll(strings.Trim(filepath.Join(dir, "tree"), "/"), "/", "_")+".lock")
		unlock, err := kpkg.Lock(ctx, lock)
		if err != nil {
			return err
		}
		for _, o := range cfg.objects {
			os.Remove(filepath.Join(dir, "state", "orig", o))
			os.Remove(filepath.Join(dir, "state", "orig", filepath.Dir(o), "."+filepath.Base(o)+".cmd"))
		}
		unlock()
	}
	return nil
}

// measure is one timed run.
func measure(ctx context.Context, cfg config, n, parallel int, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 40*time.Minute)
	defer cancel()
	progress := io.Discard
	if cfg.verbose {
		progress = stderr
	}
	tmp, err := os.MkdirTemp("", "benchfactory-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The upload's changelog is the server's debian-changelog feed.
	clFile := filepath.Join(tmp, "changelog.Debian.gz")
	debs, _ := filepath.Glob(filepath.Join(cfg.cache, "debs", "linux-source-*_"+cfg.to+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("linux-source %s in %s/debs: found %q (run with -warm)", cfg.to, cfg.cache, debs)
	}
	series := strings.Join(strings.SplitN(cfg.to, ".", 3)[:2], ".")
	if out, err := exec.CommandContext(ctx, "bash", "-c", `set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO -f - "$2" > "$3"`,
		"x", debs[0], "./usr/share/doc/linux-source-"+series+"/changelog.Debian.gz", clFile).CombinedOutput(); err != nil {
		return fmt.Errorf("extract the changelog: %w: %s", err, out)
	}
	keyDir := filepath.Join(tmp, "keys")
	kf, err := bundle.GenerateKey(keyDir, "factory", false)
	if err != nil {
		return err
	}
	priv, err := bundle.LoadPrivateKey(kf.Private)
	if err != nil {
		return err
	}
	pub, err := os.ReadFile(kf.Public)
	if err != nil {
		return err
	}

	scfg := server.DefaultConfig()
	scfg.DataDir, scfg.CheckinInterval, scfg.EngineTick, scfg.KeysDir = filepath.Join(tmp, "server"), 10*time.Second, 200*time.Millisecond, keyDir
	scfg.Feeds = []string{"debian-changelog=" + clFile}
	srv, err := server.New(ctx, scfg, server.Options{Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { srv.Serve(sctx, ln); close(served) }()
	defer func() { stop(); <-served }()
	tok, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		return err
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: srv.Fingerprint()})
	if err != nil {
		return err
	}
	admin := &api.Client{BaseURL: "https://" + ln.Addr().String(), Token: strings.TrimSpace(string(tok)), HTTP: hc}
	if _, err := admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "unattended": ["apply-livepatch"]}`}); err != nil {
		return err
	}
	et, err := admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "canary", Channel: "canary"})
	if err != nil {
		return err
	}

	// The canary guests, booted at once.
	fmt.Fprintf(stdout, "run %d: booting %d canary guests\n", n, len(cfg.kernels))
	guests := make([]*vmtest.VM, len(cfg.kernels))
	errs := make([]error, len(cfg.kernels))
	var wg sync.WaitGroup
	for i, k := range cfg.kernels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			guests[i], errs[i] = canary(ctx, cfg, k, tmp, pub, ln.Addr().String(), srv.Fingerprint(), et.Secret, progress)
		}()
	}
	wg.Wait()
	defer func() {
		for _, g := range guests {
			if g != nil {
				g.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := waitFor(ctx, 5*time.Minute, "every canary's inventory reaches the server", func() bool {
		seen := 0
		_, err := admin.Inventories(ctx, nil, func(h *api.HostInventory) error {
			for _, k := range cfg.kernels {
				if bytes.Contains(h.Inventory, []byte(`"package_version":"`+k.version+`"`)) && bytes.Contains(h.Inventory, []byte(`"release":"`+k.release+`"`)) {
					seen++
				}
			}
			return nil
		})
		return err == nil && seen == len(cfg.kernels)
	}); err != nil {
		return err
	}
	if cfg.coldObjects {
		if err := coldObjects(ctx, cfg); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cfg.settle):
	}

	// The clock: the upload appears, the worker runs, the canaries apply.
	load0 := loadavg.String()
	w := &factory.Worker{Client: admin, Key: priv, Parallel: parallel, Options: factory.Options{Cache: cfg.cache, Progress: progress},
		Smoke: func(ctx context.Context, release string, b []byte) error {
			return factory.Smoke(ctx, release, b, factory.SmokeOptions{PublicKey: pub, LogDir: filepath.Join(cfg.logDir, fmt.Sprint("smoke-", n)), Progress: progress})
		}}
	start := time.Now()
	rep, err := w.Run(ctx, cfg.from, cfg.to)
	if err != nil {
		return err
	}
	factoryDone := time.Since(start)
	applied := make([]time.Duration, len(cfg.kernels))
	for i, k := range cfg.kernels {
		var j *api.FactoryJob
		for x := range rep.Jobs {
			if rep.Jobs[x].Kernel == k.release {
				j = &rep.Jobs[x]
			}
		}
		if j == nil || j.State != api.JobRolledOut {
			return fmt.Errorf("the factory's job for %s: %+v, want rolled out (skipped: %q)", k.release, j, rep.Skipped)
		}
		if err := waitFor(ctx, 10*time.Minute, k.release+"'s canary has the live patch enabled", func() bool {
			res, err := guests[i].Sh(ctx, "cat /sys/kernel/livepatch/"+j.Name+"/enabled 2>/dev/null")
			return err == nil && strings.TrimSpace(res.Stdout) == "1"
		}); err != nil {
			return err
		}
		applied[i] = time.Since(start)
	}
	total := time.Since(start)
	load1 := loadavg.String()

	fmt.Fprintf(stdout, "run %d, parallel %d (load average before %s, after %s):\n", n, parallel, load0, load1)
	var usteps []string
	for _, st := range rep.Upload.Steps {
		usteps = append(usteps, fmt.Sprintf("%s %.1fs", st.Name, st.Duration.Seconds()))
	}
	fmt.Fprintf(stdout, "  upload %s over %s: %d fixes; %s\n", rep.Upload.Version, rep.Upload.Previous, len(rep.Upload.Fixes), strings.Join(usteps, ", "))
	for i, k := range cfg.kernels {
		j := rep.Jobs[slices.IndexFunc(rep.Jobs, func(j api.FactoryJob) bool { return j.Kernel == k.release })]
		var steps []string
		for _, s := range j.Steps {
			steps = append(steps, fmt.Sprintf("%s %.1fs", s.Name, s.Duration.Seconds()))
		}
		fmt.Fprintf(stdout, "  %s (%s): fixes %v, level %d; %s; canary applied at %.1fs\n", k.release, k.version, j.Fixes, j.Level, strings.Join(steps, ", "), applied[i].Seconds())
	}
	fmt.Fprintf(stdout, "  factory (fixes, builds, smoke tests, publish, rollouts started) %.1fs; upload to every canary applied %.1fs\n", factoryDone.Seconds(), total.Seconds())
	return nil
}

// canary boots a guest running k with the stent agent enrolled in the
// canary channel and the modules loaded.
func canary(ctx context.Context, cfg config, k kernel, tmp string, pub []byte, server, fingerprint, secret string, progress io.Writer) (*vmtest.VM, error) {
	kp, err := kpkg.Fetch(ctx, k.release, progress)
	if err != nil {
		return nil, err
	}
	disk := filepath.Join(tmp, k.release+".img")
	if err := vmtest.NewDisk(ctx, disk, 64); err != nil {
		return nil, err
	}
	status := fmt.Sprintf("Package: linux-image-%s\nStatus: install ok installed\nArchitecture: amd64\nSource: linux-signed-amd64 (%s)\nVersion: %s\n\n",
		k.release, strings.Replace(k.version, "-", "+", 1), k.version)
	osRelease := "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n"
	vm, err := vmtest.Start(ctx, vmtest.Options{Kernel: kp, Disk: disk, StentTools: true, Modules: cfg.modules, BootTimeout: 8 * time.Minute,
		LogDir:   filepath.Join(cfg.logDir, "canary-"+k.release),
		Forwards: []vmtest.Forward{{GuestPort: 8443, Host: server}},
		Files: []vmtest.File{
			{Path: "/etc/stent/keys/factory.pub", Data: pub},
			{Path: "/var/lib/dpkg/status", Data: []byte(status)},
			{Path: "/etc/os-release", Data: []byte(osRelease)},
		}})
	if err != nil {
		return nil, fmt.Errorf("boot the canary %s: %w", k.release, err)
	}
	sh := func(script string) error {
		res, err := vm.Sh(ctx, script)
		if err != nil {
			return fmt.Errorf("canary %s: %s: %w: %s%s", k.release, script, err, res.Stdout, res.Stderr)
		}
		return nil
	}
	for _, m := range cfg.modules {
		if err := sh("modprobe " + m); err != nil {
			vm.Close()
			return nil, err
		}
	}
	// Each canary its own hostname: the server enrolls one host per name.
	if err := sh("hostname canary-" + strings.ReplaceAll(k.release, ".", "-")); err != nil {
		vm.Close()
		return nil, err
	}
	url := fmt.Sprintf("https://%s:8443", vmtest.GuestHost)
	enroll := fmt.Sprintf("stent agent --server %s --enroll %s --fingerprint %s --enroll-only", url, secret, fingerprint)
	if err := sh("for i in 1 2 3 4 5; do " + enroll + " && exit 0; sleep 2; done; exit 1"); err != nil {
		vm.Close()
		return nil, err
	}
	if err := sh("setsid sh -c 'stent agent --health-delay 1s >/tmp/agent.log 2>&1' </dev/null >/dev/null 2>&1 &"); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting until %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}
