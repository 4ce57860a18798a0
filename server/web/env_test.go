package web_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/server"
)

const kernel = "6.1.0-56-amd64"

// env is a real stent-server with simulated agents, for the dashboard's
// tests.
type env struct {
	t      testing.TB
	srv    *server.Server
	url    string
	fp     string
	admin  *api.Client
	key    ed25519.PrivateKey
	keys   *bundle.Keyring
	fleet  *fleetsim.Fleet
	cancel context.CancelFunc
	done   chan error
}

// startEnv runs a server on a random loopback port and enrolls n simulated
// hosts: every third is role=db, the rest role=web; host 0 is the canary
// (label canary=true) and applies patches slowly (canaryDelay), so that a
// test can pause a rollout before its first wave.
func startEnv(t testing.TB, n int, canaryDelay time.Duration) *env {
	t.Helper()
	return startEnvWith(t, n, canaryDelay, envOpt{})
}

// envOpt is what some tests change in the environment.
type envOpt struct {
	now       func() time.Time            // the server's clock
	feeds     []string                    // server.Config.Feeds
	inventory func(i int) json.RawMessage // host i's inventory
	kernel    string                      // the hosts' kernel; default kernel
	exposure  time.Duration               // --exposure-interval; 0: the default
}

// startEnvWith is startEnv with a clock, feeds and inventories.
func startEnvWith(t testing.TB, n int, canaryDelay time.Duration, o envOpt) *env {
	t.Helper()
	if o.kernel == "" {
		o.kernel = kernel
	}
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "keys")
	kf, err := bundle.GenerateKey(keysDir, "publisher", false)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t}
	if e.key, err = bundle.LoadPrivateKey(kf.Private); err != nil {
		t.Fatal(err)
	}
	if e.keys, err = bundle.LoadKeyring(keysDir); err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.KeysDir = filepath.Join(dir, "data"), keysDir
	cfg.CheckinInterval, cfg.EngineTick = 5*time.Second, 100*time.Millisecond
	cfg.Feeds = o.feeds
	if o.exposure > 0 {
		cfg.ExposureInterval = o.exposure
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.srv, err = server.New(ctx, cfg, server.Options{Now: o.now})
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e.cancel, e.done = cancel, make(chan error, 1)
	e.url, e.fp = "https://"+ln.Addr().String(), e.srv.Fingerprint()
	go func() { e.done <- e.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { e.cancel(); <-e.done })
	tok, err := os.ReadFile(e.srv.BootstrapTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: e.fp})
	if err != nil {
		t.Fatal(err)
	}
	e.admin = &api.Client{BaseURL: e.url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	if n == 0 {
		return e
	}
	et, err := e.admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "sim", Channel: "stable"})
	e.ok(err)
	fc := fleetsim.Config{
		Server: e.url, Fingerprint: e.fp, EnrollToken: et.Secret, N: n, Kernel: o.kernel, Keys: e.keys,
		Dir: t.TempDir(), HealthDelay: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		TokenFor: fleetsim.TokenMaker(ctx, e.admin, "stable"), Inventory: o.inventory,
		Labels: func(i int) map[string]string {
			l := map[string]string{"role": "web"}
			if i%3 == 0 {
				l["role"] = "db"
			}
			if i == 0 {
				l["canary"] = "true"
			}
			return l
		},
	}
	if e.fleet, err = fleetsim.Enroll(ctx, fc); err != nil {
		t.Fatalf("enroll fleet: %v", err)
	}
	e.fleet.Hosts[0].Runtime.SetApplyDelay(canaryDelay)
	e.fleet.Start(ctx)
	t.Cleanup(e.fleet.Stop)
	e.waitFor(60*time.Second, fmt.Sprintf("%d hosts checked in", n), func() bool {
		st, err := e.admin.Fleet(ctx)
		e.ok(err)
		return st.ByKernel[o.kernel] >= n
	})
	return e
}

func (e *env) ok(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitFor(d time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// token creates an admin token with role and returns its secret.
func (e *env) token(name, role string) string {
	e.t.Helper()
	tok, err := e.admin.CreateToken(context.Background(), api.TokenRequest{Name: name, Role: role})
	e.ok(err)
	return tok.Secret
}

// client is a client that uses the admin API with token.
func (e *env) client(token string) *api.Client {
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: e.fp})
	e.ok(err)
	return &api.Client{BaseURL: e.url, Token: token, HTTP: hc}
}

// rollout publishes a patch and starts a rollout of it over every host:
// the canary first, then everyone.
func (e *env) rollout(name string) *api.Rollout {
	e.t.Helper()
	data, err := fleetsim.MakeBundle(e.key, name, kernel, 1, true, 1024)
	e.ok(err)
	ctx := context.Background()
	b, err := e.admin.PublishBundle(ctx, data)
	e.ok(err)
	r, err := e.admin.CreateRollout(ctx, api.RolloutRequest{Bundle: b.SHA256, Canary: 1, Waves: []int{100}})
	e.ok(err)
	return r
}

// browser is a plain HTTP client with a cookie jar, the server's pin and
// no redirects followed, standing in for a browser in the tests that need
// none.
func (e *env) browser() *http.Client {
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: e.fp})
	e.ok(err)
	hc.Jar, _ = cookiejar.New(nil)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return hc
}
