package fleetsim_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/server"
)

const kernel = "6.1.0-56-amd64"

// TestBusyRuntimeRollout: simulated hosts against a real server. A host
// whose runtime stays busy (a transition that never ends) reports the apply
// failed after its busy timeout, saying why, and the rollout's failure
// threshold halts it instead of the wave waiting for ever; a host whose
// lock is held for less than the timeout (a person's stent apply) applies
// once it is free and its rollout completes.
func TestBusyRuntimeRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and agents; skipped under -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.CheckinInterval, cfg.EngineTick = t.TempDir(), 5*time.Second, 100*time.Millisecond
	cfg.AcceptAnySigner = true // the hosts check the signature; the server's check is tested in server/
	srv, err := server.New(ctx, cfg, server.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	url, fp := "https://"+ln.Addr().String(), srv.Fingerprint()
	tok, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: fp})
	if err != nil {
		t.Fatal(err)
	}
	admin := &api.Client{BaseURL: url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	et, err := admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "test", Channel: "stable"})
	if err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)

	const busyTimeout = 2 * time.Second
	f, err := fleetsim.Enroll(ctx, fleetsim.Config{
		Server: url, Fingerprint: fp, EnrollToken: et.Secret, N: 2, Kernel: kernel, Keys: bundle.NewKeyring(pub), Dir: t.TempDir(),
		Labels:      func(i int) map[string]string { return map[string]string{"n": fmt.Sprint(i)} },
		TokenFor:    fleetsim.TokenMaker(ctx, admin, "stable"),
		HealthDelay: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, BusyTimeout: busyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	stalled, locked := f.Hosts[0].Runtime, f.Hosts[1].Runtime
	stalled.SetPatch(api.PatchState{Name: "lp_other", Level: 1, Enabled: true, Transition: true})
	locked.SetLockHeld("stent apply by hand")
	f.Start(ctx)
	defer f.Stop()
	// A rollout targets the hosts whose kernel the server knows, from their
	// first check-in: wait for both (on a busy machine they take a while;
	// a rollout created before then has no target and completes at once).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		hs, err := admin.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, h := range hs {
			if h.KernelRelease == kernel {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute %d of 2 hosts have checked in with kernel %s: %+v", n, kernel, hs)
		}
	}

	rollout := func(name, n string) string {
		t.Helper()
		data, err := fleetsim.MakeBundle(key, name, kernel, 1, false, 1024)
		if err != nil {
			t.Fatal(err)
		}
		info, err := admin.PublishBundle(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		r, err := admin.CreateRollout(ctx, api.RolloutRequest{Bundle: info.SHA256, Selector: map[string]string{"n": n}, Canary: 1})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	get := func(id string) api.Rollout {
		t.Helper()
		r, err := admin.Rollout(ctx, id, true)
		if err != nil {
			t.Fatal(err)
		}
		return *r
	}
	wait := func(id, state string) api.Rollout {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r := get(id)
			if r.State == state {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("rollout %s is %s after a minute, want %s (counts %+v)", id, r.State, state, r.Counts)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	start := time.Now()
	stall, lock := rollout("lp_stall", "0"), rollout("lp_lock", "1")
	time.Sleep(busyTimeout / 4)
	locked.SetLockHeld("") // the person's apply ends well before the timeout
	if r := get(stall); r.State != api.RolloutRunning || r.Counts.Failed != 0 {
		t.Errorf("rollout on a busy host before the busy timeout = %s, counts %+v; want running, nothing failed", r.State, r.Counts)
	}

	r := wait(stall, api.RolloutHalted)
	if took := time.Since(start); took < busyTimeout {
		t.Errorf("busy host failed after %v, before its busy timeout of %v", took, busyTimeout)
	}
	if len(r.Hosts) != 1 || r.Hosts[0].State != api.HostFailed ||
		!strings.Contains(r.Hosts[0].Error, "busy for") || !strings.Contains(r.Hosts[0].Error, "lp_other is in transition") {
		t.Errorf("halted rollout's hosts = %+v, want the host failed saying how long the runtime was busy and that lp_other is in transition", r.Hosts)
	}
	if stalled.Applies("lp_stall") != 0 {
		t.Errorf("lp_stall applied on a host with a patch in transition")
	}

	wait(lock, api.RolloutCompleted)
	if n := locked.Applies("lp_lock"); n != 1 {
		t.Errorf("lp_lock applied %d times once the lock was free, want 1", n)
	}
}
