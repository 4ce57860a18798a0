package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
)

// serverProc is the stent-server process under measurement.
type serverProc struct {
	cmd   *exec.Cmd
	pid   int
	url   string
	fp    string // the server certificate's pin
	hc    *http.Client
	admin *api.Client
	priv  ed25519.PrivateKey // the publisher's key, which the server trusts
	pub   ed25519.PublicKey
	mport int // metrics listener with pprof, 0 without -profile
}

// startServer starts o.serverBin with its data in dir, a publisher key it
// trusts, and extra arguments, and waits until it serves.
func startServer(ctx context.Context, o options, dir string, extra []string) (*serverProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	kf, err := bundle.GenerateKey(filepath.Join(dir, "keys"), "bench", false)
	if err != nil {
		return nil, err
	}
	sp := &serverProc{url: "https://" + addr}
	if sp.priv, err = bundle.LoadPrivateKey(kf.Private); err != nil {
		return nil, err
	}
	sp.pub = sp.priv.Public().(ed25519.PublicKey)
	args := []string{"--data-dir", filepath.Join(dir, "server"), "--listen", addr, "--checkin-interval", "60s", "--log-level", "info", "--engine-tick", "250ms",
		"--keys-dir", filepath.Dir(kf.Public)}
	if o.db != "" {
		args = append(args, "--db", o.db)
	}
	if o.memLimit != "" {
		args = append(args, "--memory-limit", o.memLimit)
	}
	if o.profile != "" {
		if sp.mport, err = freePort(); err != nil {
			return nil, err
		}
		args = append(args, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", sp.mport))
		os.MkdirAll(o.profile, 0o755)
	}
	args = append(args, extra...)
	sp.cmd = exec.Command(o.serverBin, args...)
	srvLog, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	sp.cmd.Stdout, sp.cmd.Stderr = srvLog, srvLog
	if err := sp.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (build it with make build)", o.serverBin, err)
	}
	sp.pid = sp.cmd.Process.Pid
	fp, err := waitFingerprint(ctx, srvLog.Name(), addr)
	if err != nil {
		sp.stop()
		return nil, err
	}
	sp.fp = fp
	tok, err := os.ReadFile(filepath.Join(dir, "server", "admin.token"))
	if err != nil {
		sp.stop()
		return nil, err
	}
	if sp.hc, err = api.NewHTTPClient(api.TLSOptions{Fingerprint: fp}); err != nil {
		sp.stop()
		return nil, err
	}
	sp.admin = &api.Client{BaseURL: sp.url, Token: strings.TrimSpace(string(tok)), HTTP: sp.hc}
	logf("stent-server pid %d on %s (%s)", sp.pid, addr, map[bool]string{true: "PostgreSQL", false: "SQLite"}[o.db != ""])
	return sp, nil
}

// stop ends the server and waits for it.
func (sp *serverProc) stop() {
	sp.cmd.Process.Signal(syscall.SIGTERM)
	sp.cmd.Wait()
}

// profile records the server's CPU profile for d (or until the returned
// stop is called) into dir/<name>-server.pprof; nothing without dir.
func (sp *serverProc) profile(dir, name string, d time.Duration) (stop func()) {
	if dir == "" || sp.mport == 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", sp.mport, int(d.Seconds())))
		if err != nil {
			return
		}
		defer resp.Body.Close()
		g, err := os.Create(filepath.Join(dir, name+"-server.pprof"))
		if err != nil {
			return
		}
		io.Copy(g, resp.Body)
		g.Close()
	}()
	return func() { <-done }
}
