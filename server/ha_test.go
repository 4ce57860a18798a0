package server_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/server"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/store/storetest"
)

// health GETs /healthz of the server at addr: status and body, or 0 when
// it cannot be reached.
func health(addr string) (int, string) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr + api.PathHealth)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// checkStandby fails unless the server at addr answers as a standby:
// /healthz 503 "standby", an API call 503 with code "standby".
func checkStandby(t *testing.T, addr, fp string) {
	t.Helper()
	if code, body := health(addr); code != http.StatusServiceUnavailable || body != "standby" {
		t.Errorf("standby /healthz = %d %q, want 503 \"standby\"", code, body)
	}
	hc, _ := api.NewHTTPClient(api.TLSOptions{Fingerprint: fp})
	c := &api.Client{BaseURL: "https://" + addr, Token: "sta_whatever", HTTP: hc}
	_, err := c.Fleet(context.Background())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable || se.Code != api.CodeStandby {
		t.Errorf("standby GET %s = %v, want 503 with code %q", api.PathFleet, err, api.CodeStandby)
	}
}

// balancer is what a load balancer in front of a pair does: each new
// connection goes to the first backend whose /healthz answers 200.
type balancer struct {
	ln       net.Listener
	backends []string
}

func newBalancer(t *testing.T, backends ...string) *balancer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends}
	go b.serve()
	t.Cleanup(func() { ln.Close() })
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for _, addr := range b.backends {
				if code, _ := health(addr); code != http.StatusOK {
					continue
				}
				up, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); done <- struct{}{} }()
				go func() { io.Copy(c, up); done <- struct{}{} }()
				<-done
				return
			}
		}()
	}
}

// TestStandbyTakesOver runs two stent-server processes on one PostgreSQL
// database: the second is a standby until the first is killed with
// SIGKILL, then it takes over within seconds, with the hosts and the
// rollout the first one made, and the rollout completes with no host
// applying twice. Agents and the admin client reach the pair through a
// health-checking balancer, or by listing both servers' URLs.
func TestStandbyTakesOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills server processes")
	}
	bin := buildServer(t)
	for _, mode := range []string{"balancer", "server list"} {
		t.Run(mode, func(t *testing.T) { testTakeOver(t, bin, mode == "balancer") })
	}
}

func testTakeOver(t *testing.T, bin string, balanced bool) {
	dsn := storetest.DSN(t, store.Postgres)
	dir1, dir2 := t.TempDir(), t.TempDir()
	// The pair shares one certificate, so agents pin one fingerprint.
	out, err := exec.Command(bin, "fingerprint", "--data-dir", dir1).Output()
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.TrimSpace(string(out))
	os.MkdirAll(filepath.Join(dir2, "tls"), 0o700)
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, err := os.ReadFile(filepath.Join(dir1, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir2, "tls", f), b, 0o600)
	}
	addr1, addr2 := freeAddr(t), freeAddr(t)
	keysDir, key, kr := testKeys(t)
	args := func(dir, addr string) []string {
		return []string{"--data-dir", dir, "--listen", addr, "--db", dsn, "--checkin-interval", "3s", "--engine-tick", "100ms", "--log-level", "debug", "--keys-dir", keysDir}
	}
	p1 := startProc(t, bin, filepath.Join(dir1, "server.log"), args(dir1, addr1))
	waitPort(t, addr1)
	startProc(t, bin, filepath.Join(dir2, "server.log"), args(dir2, addr2))
	waitPort(t, addr2)
	if code, body := health(addr1); code != http.StatusOK {
		t.Fatalf("first server /healthz = %d %q, want 200", code, body)
	}
	checkStandby(t, addr2, fp)

	url := "https://" + addr1 + ",https://" + addr2
	if balanced {
		url = "https://" + newBalancer(t, addr1, addr2).addr()
	}
	e := &env{t: t, url: url, dir: dir1, fp: fp, key: key, keys: kr, keysDir: keysDir}
	e.useAdmin(filepath.Join(dir1, "admin.token"))

	const n = 30
	f := e.fleet(n, "stable", func(c *fleetsim.Config) {
		c.ApplyDelay, c.HealthDelay, c.Spread = 200*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	})
	e.waitHosts(n)
	b := e.publish("lp_failover", 1, true, 4096)
	r := e.createRollout(api.RolloutRequest{Bundle: b.SHA256, Canary: 3, Waves: []int{30, 60, 100}})
	e.waitFor(60*time.Second, "wave 1 under way", func() bool {
		r = e.rollout(r.ID)
		return r.Wave >= 1 && r.Counts.Applied >= 3
	})
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.cmd.Wait()
	killed := time.Now()
	t.Logf("killed the active server at wave %d with %d of %d applied", r.Wave, r.Counts.Applied, n)
	for code := 0; code != http.StatusOK; code, _ = health(addr2) {
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("the standby did not take over within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("standby active %v after the kill", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("take-over took %v, want a few seconds", took)
	}
	// The new active one has what the old one wrote.
	hosts := e.hosts()
	if len(hosts) != n {
		t.Errorf("after the take-over: %d hosts, want %d", len(hosts), n)
	}
	if got := e.rollout(r.ID); got.ID != r.ID || got.Counts.Applied < r.Counts.Applied {
		t.Errorf("after the take-over: rollout %+v, want %s with at least %d applied", got.Counts, r.ID, r.Counts.Applied)
	}
	r = e.waitState(r.ID, api.RolloutCompleted, 90*time.Second)
	if r.Counts.Target != n || r.Counts.Healthy != n {
		t.Errorf("after the take-over: counts %+v, want all %d hosts healthy", r.Counts, n)
	}
	for _, h := range f.Hosts {
		if got := h.Runtime.Applies("lp_failover"); got != 1 {
			t.Errorf("%s applied lp_failover %d times, want 1", h.Name, got)
		}
	}
}

// TestActiveLosesLock: when PostgreSQL ends the active server's lock
// connection, that server stops (Serve returns ErrLockLost) and the
// standby takes over with the fleet the first one wrote.
func TestActiveLosesLock(t *testing.T) {
	dsn := storetest.DSN(t, store.Postgres)
	e := startEnv(t, envOpt{engine: store.Postgres, dsn: dsn})
	if !e.srv.Active() {
		t.Fatal("the first server is not active")
	}
	e.fleet(3, "stable", nil)
	e.waitHosts(3)

	// A second server on the same database, in this process.
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.DB, cfg.EngineTick, cfg.KeysDir = t.TempDir(), dsn, 100*time.Millisecond, e.keysDir
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := server.New(ctx, cfg, server.Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Active() {
		t.Fatal("the second server is active while the first holds the lock")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- sb.Serve(ctx, ln) }()
	defer func() { cancel(); <-bDone }()
	checkStandby(t, ln.Addr().String(), sb.Fingerprint())

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pid int
	if err := db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND pid IN
		(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`, store.LockApplicationName).Scan(&pid); err != nil {
		t.Fatalf("find the active server's lock backend: %v", err)
	}
	if _, err := db.Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	terminated := time.Now()
	select {
	case err := <-e.done:
		e.cancel() // Serve has returned; nothing left to stop
		e.cancel = nil
		if !errors.Is(err, server.ErrLockLost) {
			t.Errorf("Serve() of the server that lost its lock = %v, want ErrLockLost", err)
		}
		t.Logf("the old active server stopped %v after its lock backend was terminated", time.Since(terminated).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the server whose lock connection was terminated still serves after 10 s")
	}
	if e.srv.Active() {
		t.Error("the old server still says it is active")
	}
	for !sb.Active() {
		if time.Since(terminated) > 10*time.Second {
			t.Fatal("the standby did not take over within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := health(ln.Addr().String()); code != http.StatusOK || body != "ok" {
		t.Errorf("new active /healthz = %d %q, want 200 ok", code, body)
	}
	e.admin.BaseURL = "https://" + ln.Addr().String()
	e.admin.HTTP, _ = api.NewHTTPClient(api.TLSOptions{Fingerprint: sb.Fingerprint()})
	hosts := e.hosts()
	if len(hosts) != 3 {
		t.Errorf("the new active server has %d hosts, want the 3 the old one enrolled", len(hosts))
	}
}

// TestSQLiteOneServerPerDataDir: a second server on a data folder in use
// fails at once and says why.
func TestSQLiteOneServerPerDataDir(t *testing.T) {
	e := startEnv(t, envOpt{})
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.KeysDir = e.dir, e.keysDir
	_, err := server.New(context.Background(), cfg, server.Options{Log: testLog(t)})
	if err == nil || !strings.Contains(err.Error(), "in use by another stent-server") {
		t.Fatalf("second server.New on %s = %v, want an error saying the folder is in use", e.dir, err)
	}
	// Once the first one stops, the folder is free again.
	e.restart(0)
}
