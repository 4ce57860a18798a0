package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	t     testing.TB
	srv   *server.Server
	url   string
	fp    string
	admin *api.Client
	key   ed25519.PrivateKey
	keys  *bundle.Keyring
	// keysDir holds the public half of key: the server's --keys-dir.
	keysDir string
	cancel  context.CancelFunc
	done    chan error
	dir     string
	o       envOpt
	// holdAfter, when above 0, stalls a throttled connection's writes once
	// it has sent that many bytes, until it is set back to 0.
	holdAfter atomic.Int64
}

type envOpt struct {
	anySigner   bool // --accept-any-signer instead of a --keys-dir
	engine      string
	interval    time.Duration
	dataDir     string
	dsn         string
	throttle    int // bytes per second the server sends on each connection; 0: no limit
	bodyTimeout time.Duration
	now         func() time.Time // the server's clock; nil: time.Now
	feeds       []string         // --feed
	feedClient  *http.Client     // fetches the feed URLs
	exposure    time.Duration    // --exposure-interval; 0: the default
}

func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("STENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	if o.engine == "" {
		o.engine = store.SQLite
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.engine == store.Postgres && o.dsn == "" {
		o.dsn = storetest.DSN(t, store.Postgres)
	}
	if o.interval == 0 {
		o.interval = 5 * time.Second
	}
	e := &env{t: t, o: o, dir: o.dataDir}
	e.start("127.0.0.1:0")
	t.Cleanup(e.stop)
	e.useAdmin(e.srv.BootstrapTokenFile())
	return e
}

// useAdmin makes the env's admin client from the bootstrap admin token in
// tokenFile (the server at e.url, pinned to e.fp) and a signing key that
// the simulated hosts trust.
func (e *env) useAdmin(tokenFile string) {
	e.t.Helper()
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		e.t.Fatalf("bootstrap token: %v", err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: e.fp})
	if err != nil {
		e.t.Fatal(err)
	}
	e.admin = &api.Client{BaseURL: e.url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	if e.key == nil {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		e.key, e.keys = priv, bundle.NewKeyring(pub)
	}
}

// testKeys makes a publisher's signing key and a trusted keys folder
// holding its public half, for the server's --keys-dir.
func testKeys(t testing.TB) (dir string, key ed25519.PrivateKey, kr *bundle.Keyring) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "keys")
	kf, err := bundle.GenerateKey(dir, "publisher", false)
	if err != nil {
		t.Fatal(err)
	}
	if key, err = bundle.LoadPrivateKey(kf.Private); err != nil {
		t.Fatal(err)
	}
	if kr, err = bundle.LoadKeyring(dir); err != nil {
		t.Fatal(err)
	}
	return dir, key, kr
}

// start runs a server on the env's data folder, listening on addr.
func (e *env) start(addr string) {
	e.t.Helper()
	cfg := server.DefaultConfig()
	if e.keysDir == "" && !e.o.anySigner {
		e.keysDir, e.key, e.keys = testKeys(e.t)
	}
	cfg.DataDir, cfg.DB, cfg.CheckinInterval = e.o.dataDir, e.o.dsn, e.o.interval
	cfg.KeysDir, cfg.AcceptAnySigner = e.keysDir, e.o.anySigner
	cfg.EngineTick = 100 * time.Millisecond
	cfg.BodyTimeout = e.o.bodyTimeout
	cfg.Feeds = e.o.feeds
	if e.o.exposure > 0 {
		cfg.ExposureInterval = e.o.exposure
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.Options{Log: testLog(e.t), Now: e.o.now, FeedClient: e.o.feedClient})
	if err != nil {
		cancel()
		e.t.Fatalf("server.New: %v", err)
	}
	var ln net.Listener
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if e.o.throttle > 0 {
		ln = &throttledListener{Listener: ln, rate: e.o.throttle, holdAfter: &e.holdAfter}
	}
	e.srv, e.cancel, e.done = srv, cancel, make(chan error, 1)
	e.url, e.fp = "https://"+ln.Addr().String(), srv.Fingerprint()
	go func() { e.done <- srv.Serve(ctx, ln) }()
}

// restart stops the server and starts it again on the same address and
// data, as an operator would.
func (e *env) restart(down time.Duration) {
	e.t.Helper()
	addr := strings.TrimPrefix(e.url, "https://")
	e.stop()
	time.Sleep(down)
	e.start(addr)
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel = nil
	}
}

// throttledListener slows every connection's writes to rate bytes/s, so a
// download takes long enough to be interrupted, and stalls them past
// *holdAfter bytes, so a test can interrupt it before it ends however slow
// the machine.
type throttledListener struct {
	net.Listener
	rate      int
	holdAfter *atomic.Int64
}

func (l *throttledListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &throttledConn{Conn: c, rate: l.rate, holdAfter: l.holdAfter}, nil
}

type throttledConn struct {
	net.Conn
	rate      int
	holdAfter *atomic.Int64
	sent      atomic.Int64
}

func (c *throttledConn) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		for h := c.holdAfter.Load(); h > 0 && c.sent.Load() >= h; h = c.holdAfter.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		n := min(len(b), 4096)
		m, err := c.Conn.Write(b[:n])
		written += m
		c.sent.Add(int64(m))
		if err != nil {
			return written, err
		}
		b = b[n:]
		time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
	}
	return written, nil
}

// ok fails the test on an admin call's error, naming the call.
func (e *env) ok(err error) {
	e.t.Helper()
	var se *api.StatusError
	if errors.As(err, &se) {
		e.t.Fatalf("%s %s: %v", se.Method, se.Path, err)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) enrollToken(channel string, maxUses int) string {
	e.t.Helper()
	tok, err := e.admin.CreateEnrollToken(context.Background(), api.EnrollTokenRequest{Name: "test", Channel: channel, MaxUses: maxUses})
	e.ok(err)
	return tok.Secret
}

func (e *env) createRollout(req api.RolloutRequest) api.Rollout {
	e.t.Helper()
	r, err := e.admin.CreateRollout(context.Background(), req)
	e.ok(err)
	return *r
}

func (e *env) rolloutAction(id, action string, req api.RolloutActionRequest) api.Rollout {
	e.t.Helper()
	r, err := e.admin.RolloutAction(context.Background(), id, action, req)
	e.ok(err)
	return *r
}

func (e *env) audit(q api.AuditQuery) []api.AuditEntry {
	e.t.Helper()
	es, err := e.admin.Audit(context.Background(), q)
	e.ok(err)
	return es
}

func (e *env) hosts() []api.Host {
	e.t.Helper()
	hs, err := e.admin.Hosts(context.Background())
	e.ok(err)
	return hs
}

func (e *env) publish(name string, level int64, replace bool, size int) api.BundleInfo {
	e.t.Helper()
	data, err := fleetsim.MakeBundle(e.key, name, kernel, level, replace, size)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := e.admin.PublishBundle(context.Background(), data)
	e.ok(err)
	return *info
}

func (e *env) fleet(n int, channel string, mod func(*fleetsim.Config)) *fleetsim.Fleet {
	e.t.Helper()
	cfg := fleetsim.Config{
		Server: e.url, Fingerprint: e.fp, EnrollToken: e.enrollToken(channel, 0), N: n, Kernel: kernel, Keys: e.keys,
		Dir: e.t.TempDir(), HealthDelay: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Log: testLog(e.t),
	}
	cfg.TokenFor = fleetsim.TokenMaker(context.Background(), e.admin, channel)
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
	e.waitFor(60*time.Second, fmt.Sprintf("%d hosts checked in", n), func() bool {
		st, err := e.admin.Fleet(context.Background())
		e.ok(err)
		return st.ByKernel[kernel] >= n
	})
}

func (e *env) rollout(id string) api.Rollout {
	e.t.Helper()
	r, err := e.admin.Rollout(context.Background(), id, true)
	e.ok(err)
	return *r
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
