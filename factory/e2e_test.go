package factory_test

// End to end (issue 11, part 7): a stent-server whose debian-changelog feed
// is the 6.1.192-3 package's changelog, a QEMU guest running
// 6.1.0-56-amd64 (package 6.1.192-2) with the stent agent, and the factory
// worker with the real packages, builder and smoke test: the guest ends
// with the 6.1.192-3 fix applied live, and stent plan says its CVE is
// fixed by a live patch.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/build"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/factory"
	_ "github.com/stent-dev/stent/internal/cli" // stent plan, in process
	"github.com/stent-dev/stent/internal/hostcli"
	"github.com/stent-dev/stent/internal/kpkg"
	"github.com/stent-dev/stent/internal/vmtest"
	"github.com/stent-dev/stent/server"
	"github.com/stent-dev/stent/vuln"
)

const (
	e2eKernel = "6.1.0-56-amd64"
	e2eCVE    = "CVE-2026-99362"
)

// dpkgStatus and osRelease make the guest's inventory a Debian 12 host's
// running the 6.1.192-2 kernel package.
const dpkgStatus = `Package: linux-image-6.1.0-56-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2

`

const osRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`

func TestEndToEnd(t *testing.T) {
	k := vmtest.Kernel(t, e2eKernel) // skips under -short or without QEMU
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cache, err := kpkg.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	// The upload's changelog is the server's debian-changelog feed.
	if _, err := build.Source(ctx, cache, "6.1.192-3", nil); err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(cache, "debs", "linux-source-6.1_6.1.192-3_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("linux-source-6.1 6.1.192-3: found %q", debs)
	}
	clFile := filepath.Join(t.TempDir(), "changelog.Debian.gz")
	out, err := exec.CommandContext(ctx, "bash", "-c", `set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xO -f - ./usr/share/doc/linux-source-6.1/changelog.Debian.gz > "$2"`, "x", debs[0], clFile).CombinedOutput()
	if err != nil {
		t.Fatalf("extract the changelog: %v: %s", err, out)
	}

	// The factory's key: the server and the guest trust it.
	keyDir := t.TempDir()
	kf, err := bundle.GenerateKey(keyDir, "factory", false)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := bundle.LoadPrivateKey(kf.Private)
	pub, _ := os.ReadFile(kf.Public)

	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.CheckinInterval, cfg.EngineTick, cfg.KeysDir = t.TempDir(), 10*time.Second, 200*time.Millisecond, keyDir
	cfg.Feeds = []string{"debian-changelog=" + clFile}
	srv, err := server.New(ctx, cfg, server.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(sctx, ln); close(done) }()
	defer func() { stop(); <-done }()
	tok, _ := os.ReadFile(srv.BootstrapTokenFile())
	hc, _ := api.NewHTTPClient(api.TLSOptions{Fingerprint: srv.Fingerprint()})
	admin := &api.Client{BaseURL: "https://" + ln.Addr().String(), Token: strings.TrimSpace(string(tok)), HTTP: hc}
	if _, err := admin.PutPolicy(ctx, api.PolicyUpload{File: "p.json", Source: `{"schema_version": 1, "unattended": ["apply-livepatch"]}`}); err != nil {
		t.Fatal(err)
	}
	et, err := admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "canary", Channel: "canary"})
	if err != nil {
		t.Fatal(err)
	}

	// The guest: the older kernel, with the agent.
	disk := filepath.Join(t.TempDir(), "state.img")
	if err := vmtest.NewDisk(ctx, disk, 64); err != nil {
		t.Fatal(err)
	}
	opts := vmtest.Options{Kernel: k, Disk: disk, StentTools: true, Modules: []string{"nfsd"}, BootTimeout: 6 * time.Minute, Files: []vmtest.File{
		{Path: "/etc/stent/keys/factory.pub", Data: pub},
		{Path: "/var/lib/dpkg/status", Data: []byte(dpkgStatus)},
		{Path: "/etc/os-release", Data: []byte(osRelease)},
	}}
	opts.Forwards = append(opts.Forwards, vmtest.Forward{GuestPort: 8443, Host: ln.Addr().String()})
	guestURL := fmt.Sprintf("https://%s:8443", vmtest.GuestHost)
	vm := vmtest.Boot(ctx, t, opts)
	sh := func(script string) string {
		t.Helper()
		res, err := vm.Sh(ctx, script)
		if err != nil {
			t.Fatalf("guest: %s: %v\n%s%s", script, err, res.Stdout, res.Stderr)
		}
		return res.Stdout
	}
	sh("modprobe nfsd")
	// The first TLS handshake of a guest under TCG on a busy machine can
	// take longer than the client's 10 s: try again.
	enroll := fmt.Sprintf("stent agent --server %s --enroll %s --fingerprint %s --enroll-only", guestURL, et.Secret, srv.Fingerprint())
	sh("for i in 1 2 3 4 5; do " + enroll + " && exit 0; sleep 2; done; exit 1")
	sh("setsid sh -c 'stent agent --health-delay 1s >/tmp/agent.log 2>&1' </dev/null >/dev/null 2>&1 &")
	t.Cleanup(func() {
		if t.Failed() {
			res, _ := vm.Sh(context.Background(), "tail -n 40 /tmp/agent.log")
			t.Logf("agent log in the guest:\n%s", res.Stdout)
		}
	})
	var hostID string
	waitFor(t, 3*time.Minute, "the guest's inventory reaches the server", func() bool {
		_, err := admin.Inventories(ctx, nil, func(h *api.HostInventory) error {
			if bytes.Contains(h.Inventory, []byte(`"package_version":"6.1.192-2"`)) {
				hostID = h.HostID
			}
			return nil
		})
		return err == nil && hostID != ""
	})

	// The factory: the upload appears, and the worker runs.
	logDir := t.TempDir()
	w := &factory.Worker{Client: admin, Key: priv, Options: factory.Options{Cache: cache, Progress: testLog{t}},
		Smoke: func(ctx context.Context, kernel string, b []byte) error {
			return factory.Smoke(ctx, kernel, b, factory.SmokeOptions{PublicKey: pub, LogDir: logDir, Progress: testLog{t}})
		}}
	start := time.Now()
	rep, err := w.Run(ctx, "6.1.192-2", "6.1.192-3")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Jobs) != 1 || rep.Jobs[0].State != api.JobRolledOut {
		t.Fatalf("factory jobs = %+v, want one rolled out", rep.Jobs)
	}
	j := rep.Jobs[0]
	built := time.Since(start)
	// The worker's canary rollout, or the live plan's unattended action
	// that the published bundle starts at once for exactly this host
	// (whichever reaches the agent first), applies it.
	waitFor(t, 5*time.Minute, "the guest has the live patch enabled", func() bool {
		res, err := vm.Sh(ctx, "cat /sys/kernel/livepatch/"+j.Name+"/enabled 2>/dev/null")
		return err == nil && strings.TrimSpace(res.Stdout) == "1"
	})
	total := time.Since(start)
	for _, s := range j.Steps {
		t.Logf("step %-10s %6.1fs", s.Name, s.Duration.Seconds())
	}
	t.Logf("upload to canary applied: %.1fs (factory %.1fs, rollout %.1fs)", total.Seconds(), built.Seconds(), (total - built).Seconds())
	waitFor(t, 3*time.Minute, "the worker's canary rollout completes", func() bool {
		r, err := admin.Rollout(ctx, j.Rollout, false)
		return err == nil && r.State == api.RolloutCompleted
	})

	// stent plan, with the guest's own inventory: the CVE is live patched.
	invFile := filepath.Join(t.TempDir(), "inv.json")
	if err := os.WriteFile(invFile, []byte(sh("stent inventory --json")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := hostcli.Run(ctx, []string{"plan", "--inventory", invFile, "--feed", "debian-changelog=" + clFile, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("stent plan: exit %d: %s", code, stderr.String())
	}
	var fp struct {
		Hosts []struct {
			Exposure []vuln.Finding `json:"exposure"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &fp); err != nil || len(fp.Hosts) != 1 {
		t.Fatalf("stent plan --json: %v, %d hosts:\n%s", err, len(fp.Hosts), stdout.String())
	}
	state := vuln.State("")
	for _, f := range fp.Hosts[0].Exposure {
		if f.CVE == e2eCVE {
			state = f.State
		}
	}
	if state != vuln.FixedLivePatch {
		t.Errorf("stent plan: %s is %q, want %q", e2eCVE, state, vuln.FixedLivePatch)
	}
	// The server's live plan says the same once the agent reported.
	seen := ""
	deadline := time.Now().Add(3 * time.Minute)
	for {
		p, err := admin.Plan(ctx, api.PlanQuery{Host: hostID})
		switch {
		case err != nil:
			seen = err.Error()
		case len(p.Page) != 1:
			seen = fmt.Sprintf("%d hosts, error %q", len(p.Page), p.Error)
		case p.Page[0].Plan == nil:
			seen = fmt.Sprintf("no plan: %q %q", p.Error, p.Page[0].Error)
		default:
			seen = "no finding for " + e2eCVE
			for _, f := range p.Page[0].Plan.Exposure {
				if f.CVE == e2eCVE {
					seen = fmt.Sprintf("%s is %s (applied patches %+v)", e2eCVE, f.State, p.Page[0].Plan.LivePatches)
				}
			}
		}
		if strings.Contains(seen, string(vuln.FixedLivePatch)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's plan for the guest: %s; want %s", seen, vuln.FixedLivePatch)
		}
		time.Sleep(time.Second)
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
