package agent_test

// End to end with a real kernel: a Debian kernel boots under QEMU, the
// stent agent in its initramfs enrolls with a stent-server running in this
// test on the host's loopback, a published bundle is rolled out to it and
// applied live, then reverted fleet-wide.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/vmtest"
	"github.com/stent-dev/stent/server"
)

// guestNetwork sets up opts so that the guest reaches hostAddr (a server
// on the host's loopback) and returns the URL the guest uses for it: QEMU
// user-mode networking restricted to one forward (vmtest.Options.Forwards).
func guestNetwork(opts *vmtest.Options, hostAddr string) (guestURL string) {
	opts.Forwards = append(opts.Forwards, vmtest.Forward{GuestPort: 8443, Host: hostAddr})
	return fmt.Sprintf("https://%s:8443", vmtest.GuestHost)
}

func TestAgentInGuest(t *testing.T) {
	k := vmtest.Kernel(t, vmtest.DefaultABI) // skips under -short or without QEMU
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The publisher's key, trusted by the server and the guest.
	keyDir := t.TempDir()
	kf, err := bundle.GenerateKey(keyDir, "e2e", false)
	if err != nil {
		t.Fatal(err)
	}

	// The server, on loopback.
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.CheckinInterval, cfg.EngineTick, cfg.KeysDir = t.TempDir(), 10*time.Second, 200*time.Millisecond, keyDir
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

	// A signed bundle of the cmdline test patch for the guest's kernel.
	priv, _ := bundle.LoadPrivateKey(kf.Private)
	pub, _ := os.ReadFile(kf.Public)
	ko, err := os.ReadFile(vmtest.Module(t, k, "stent_lp_cmdline_v1"))
	if err != nil {
		t.Fatal(err)
	}
	data := makeBundle(t, priv, k.Release, ko)

	var et api.Token
	if err := admin.Do(ctx, http.MethodPost, api.PathEnrollToken, api.EnrollTokenRequest{Name: "e2e", Labels: map[string]string{"e2e": "yes"}}, &et); err != nil {
		t.Fatal(err)
	}
	disk := t.TempDir() + "/state.img"
	if err := vmtest.NewDisk(ctx, disk, 64); err != nil {
		t.Fatal(err)
	}
	opts := vmtest.Options{Kernel: k, Disk: disk, StentTools: true, Files: []vmtest.File{{Path: "/etc/stent/keys/e2e.pub", Data: pub}}}
	guestURL := guestNetwork(&opts, ln.Addr().String())
	vm := vmtest.Boot(ctx, t, opts)
	sh := func(script string) string {
		t.Helper()
		res, err := vm.Sh(ctx, script)
		if err != nil {
			t.Fatalf("guest: %s: %v\n%s%s", script, err, res.Stdout, res.Stderr)
		}
		return res.Stdout
	}
	sh(fmt.Sprintf("stent agent --server %s --enroll %s --fingerprint %s --label e2e=yes --enroll-only", guestURL, et.Secret, srv.Fingerprint()))
	sh("setsid sh -c 'stent agent --health-delay 1s >/tmp/agent.log 2>&1' </dev/null >/dev/null 2>&1 &")
	t.Cleanup(func() {
		if t.Failed() {
			res, _ := vm.Sh(context.Background(), "tail -n 40 /tmp/agent.log")
			t.Logf("agent log in the guest:\n%s", res.Stdout)
		}
	})
	waitFor(t, 2*time.Minute, "the guest's agent checks in", func() bool {
		var st api.FleetStatus
		return admin.Get(ctx, api.PathFleet, &st) == nil && st.ByKernel[k.Release] == 1
	})

	var info api.BundleInfo
	if err := admin.Do(ctx, http.MethodPost, api.PathAdminBundle, data, &info); err != nil {
		t.Fatal(err)
	}
	var r api.Rollout
	if err := admin.Do(ctx, http.MethodPost, api.PathRollouts, api.RolloutRequest{Bundle: info.SHA256}, &r); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 3*time.Minute, "the rollout completes", func() bool {
		return admin.Get(ctx, api.PathRollouts+"/"+r.ID, &r) == nil && r.State == api.RolloutCompleted
	})
	t.Logf("publish to healthy on the real kernel: %v", time.Since(start).Round(time.Millisecond))
	if got := sh("cat /proc/cmdline"); !strings.HasPrefix(got, "stent-v1 patched") {
		t.Errorf("/proc/cmdline in the guest = %q, want the patched text", got)
	}

	// Fleet-wide revert: the guest unloads the patch live.
	var rs []api.Rollout
	if err := admin.Do(ctx, http.MethodPost, api.PathRevert, api.RevertRequest{Name: "stent_lp_cmdline_v1", Reason: "e2e"}, &rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the revert completes", func() bool {
		return admin.Get(ctx, api.PathRollouts+"/"+r.ID, &r) == nil && r.State == api.RolloutReverted
	})
	if got := sh("cat /proc/cmdline"); strings.Contains(got, "stent-v1 patched") {
		t.Errorf("/proc/cmdline after the revert = %q, want the original", got)
	}
	for _, action := range []string{"host.apply", "host.revert"} {
		var audit []api.AuditEntry
		if err := admin.Get(ctx, api.PathAudit+"?action="+action, &audit); err != nil || len(audit) != 1 || !strings.Contains(string(audit[0].Detail), `"result":"ok"`) {
			t.Errorf("audit %s = %+v, %v; want one ok", action, audit, err)
		}
	}
}

func makeBundle(t *testing.T, key ed25519.PrivateKey, release string, ko []byte) []byte {
	t.Helper()
	m := &bundle.Manifest{FormatVersion: bundle.FormatVersion, Name: "stent_lp_cmdline_v1", Level: 1, Replace: true,
		Kernel: bundle.Kernel{Release: release}, CVEs: []string{"CVE-2026-1001"},
		Functions:   []bundle.Function{{Object: "vmlinux", Name: "cmdline_proc_show"}},
		Description: "end-to-end test patch", Created: time.Now().UTC().Truncate(time.Second)}
	var b strings.Builder
	if err := bundle.Create(&b, m, ko, key); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
