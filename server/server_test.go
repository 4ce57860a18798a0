package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/server"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/store/storetest"
)

const kernel = "6.1.0-56-amd64"

// env is a running server with an admin client and a signing key.
type env struct {
	t      *testing.T
	srv    *server.Server
	url    string
	fp     string
	admin  *api.Client
	key    ed25519.PrivateKey
	keys   *bundle.Keyring
	cancel context.CancelFunc
	done   chan error
	dir    string
}

type envOpt struct {
	engine   string
	interval time.Duration
	dataDir  string
	dsn      string
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("STENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startEnv(t *testing.T, o envOpt) *env {
	t.Helper()
	if o.engine == "" {
		o.engine = store.SQLite
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = o.dataDir
	cfg.DB = o.dsn
	if o.engine == store.Postgres && cfg.DB == "" {
		cfg.DB = storetest.DSN(t, store.Postgres)
	}
	cfg.CheckinInterval = o.interval
	if cfg.CheckinInterval == 0 {
		cfg.CheckinInterval = 5 * time.Second
	}
	cfg.EngineTick = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{Log: testLog(t)})
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, url: "https://" + ln.Addr().String(), fp: srv.Fingerprint(), cancel: cancel, done: make(chan error, 1), dir: o.dataDir}
	go func() { e.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(e.stop)
	tok, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		t.Fatalf("bootstrap token: %v", err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: e.fp})
	if err != nil {
		t.Fatal(err)
	}
	e.admin = &api.Client{BaseURL: e.url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e.key, e.keys = priv, bundle.NewKeyring(pub)
	return e
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel = nil
	}
}

func (e *env) do(method, path string, in, out any) {
	e.t.Helper()
	if err := e.admin.Do(context.Background(), method, path, in, out); err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (e *env) enrollToken(channel string, maxUses int) string {
	var tok api.Token
	e.do(http.MethodPost, api.PathEnrollToken, api.EnrollTokenRequest{Name: "test", Channel: channel, MaxUses: maxUses}, &tok)
	return tok.Secret
}

func (e *env) publish(name string, level int64, replace bool, size int) api.BundleInfo {
	e.t.Helper()
	data, err := fleetsim.MakeBundle(e.key, name, kernel, level, replace, size)
	if err != nil {
		e.t.Fatal(err)
	}
	var info api.BundleInfo
	e.do(http.MethodPost, api.PathAdminBundle, data, &info)
	return info
}

func (e *env) fleet(n int, channel string, mod func(*fleetsim.Config)) *fleetsim.Fleet {
	e.t.Helper()
	cfg := fleetsim.Config{
		Server: e.url, Fingerprint: e.fp, EnrollToken: e.enrollToken(channel, 0), N: n, Kernel: kernel, Keys: e.keys,
		Dir: e.t.TempDir(), HealthDelay: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Log: testLog(e.t),
	}
	if mod != nil {
		mod(&cfg)
	}
	f, err := fleetsim.Enroll(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("enroll fleet: %v", err)
	}
	f.Start(context.Background())
	e.t.Cleanup(f.Stop)
	return f
}

// waitHosts waits until n hosts reported a kernel (checked in once).
func (e *env) waitHosts(n int) {
	e.t.Helper()
	e.waitFor(10*time.Second, fmt.Sprintf("%d hosts checked in", n), func() bool {
		var st api.FleetStatus
		e.do(http.MethodGet, api.PathFleet, nil, &st)
		return st.ByKernel[kernel] >= n
	})
}

func (e *env) rollout(id string) api.Rollout {
	e.t.Helper()
	var r api.Rollout
	e.do(http.MethodGet, api.PathRollouts+"/"+id, nil, &r)
	return r
}

func (e *env) waitState(id, state string, d time.Duration) api.Rollout {
	e.t.Helper()
	var r api.Rollout
	e.waitFor(d, "rollout "+id+" "+state, func() bool {
		r = e.rollout(id)
		return r.State == state
	})
	return r
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
