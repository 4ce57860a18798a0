package fleetvm

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/debvm"
	"github.com/stent-dev/stent/internal/pkgbuild"
	"github.com/stent-dev/stent/server"
)

// fleet is a stent-server on the host's loopback, reachable from the
// guests at https://debvm.GuestHost:8443, with an admin client.
type fleet struct {
	t     *testing.T
	srv   *server.Server
	port  int
	admin *api.Client
}

const guestServerPort = 8443

func startFleet(t *testing.T) *fleet {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.CheckinInterval = 10 * time.Second
	cfg.EngineTick = 500 * time.Millisecond
	cfg.AcceptAnySigner = true // this test publishes no bundles
	ctx, cancel := context.WithCancel(context.Background())
	lv := slog.LevelWarn
	if os.Getenv("STENT_TEST_LOG") != "" {
		lv = slog.LevelDebug
	}
	srv, err := server.New(ctx, cfg, server.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	tok, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: srv.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return &fleet{t: t, srv: srv, port: port,
		admin: &api.Client{BaseURL: "https://127.0.0.1:" + strconv.Itoa(port), Token: strings.TrimSpace(string(tok)), HTTP: hc}}
}

func (f *fleet) do(method, path string, in, out any) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.admin.Do(ctx, method, path, in, out); err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func (f *fleet) enrollToken(labels map[string]string) string {
	f.t.Helper()
	var tok api.Token
	f.do(http.MethodPost, api.PathEnrollToken, api.EnrollTokenRequest{Name: "vm", Labels: labels, TTL: api.Duration(time.Hour)}, &tok)
	return tok.Secret
}

func (f *fleet) setWindow(w api.MaintenanceWindow) {
	f.t.Helper()
	f.do(http.MethodPut, api.PathWindows+"/"+w.Name, w, &api.MaintenanceWindow{})
}

func (f *fleet) kernelRollout(id string) api.KernelRollout {
	f.t.Helper()
	var r api.KernelRollout
	f.do(http.MethodGet, api.PathKernelRollouts+"/"+id, nil, &r)
	return r
}

func (f *fleet) reboots() api.RebootStatus {
	f.t.Helper()
	var rs api.RebootStatus
	f.do(http.MethodGet, api.PathReboots, nil, &rs)
	return rs
}

// waitRollout polls kernel rollout id until ok says it is done.
func (f *fleet) waitRollout(id string, timeout time.Duration, what string, ok func(api.KernelRollout) bool) api.KernelRollout {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	var r api.KernelRollout
	for {
		r = f.kernelRollout(id)
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("kernel rollout %s after %v: state %s (%s), counts %v, targets %+v; want %s", id, timeout, r.State, r.Halt, r.Counts, r.Targets, what)
		}
		time.Sleep(3 * time.Second)
	}
}

// stentDeb builds Stent's host package the way `make package` does.
func stentDeb(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := pkgbuild.Build(ctx, pkgbuild.Options{OutDir: t.TempDir(), Formats: []string{"deb"}})
	if err != nil {
		t.Fatalf("build the stent package: %v", err)
	}
	p := res.Path(pkgbuild.Host, "deb")
	if p == "" {
		t.Fatalf("pkgbuild wrote %+v, no host .deb", res.Packages)
	}
	return p
}

// vmHost is one guest of the fleet.
type vmHost struct {
	*debvm.Host
	id string
}

// bootHosts boots one guest per name, each installing Stent from deb at its
// first boot and enrolling with the token, running the agent with kernel
// updates on. A host's prelude (sh) runs at every boot before that.
func (f *fleet) bootHosts(ctx context.Context, img, repo, deb string, names []string, token map[string]string, extra map[string][]debvm.File, prelude map[string]string) map[string]*vmHost {
	f.t.Helper()
	dropIn := "[Service]\nExecStart=\nExecStart=/usr/sbin/stent agent --kernel-updates --health-delay 5s --hook-timeout 10s --boot-watchdog 5m\n"
	hosts := map[string]*vmHost{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			script := fmt.Sprintf(`set -e
%sif [ ! -e /var/lib/stent/agent/credentials.json ]; then
  stent agent --server https://%s:%d --enroll %s --fingerprint %s --enroll-only
fi
systemctl start stent-agent
`, prelude[name], debvm.GuestHost, guestServerPort, token[name], f.srv.Fingerprint())
			files := append([]debvm.File{{Path: "/etc/systemd/system/stent-agent.service.d/test.conf", Data: []byte(dropIn)}}, extra[name]...)
			h, err := debvm.Boot(ctx, debvm.Config{Image: img, Name: name, Dir: filepath.Join(f.t.TempDir(), name), Repo: repo,
				Forwards: []debvm.Forward{{GuestPort: guestServerPort, Host: "127.0.0.1:" + strconv.Itoa(f.port)}},
				Files:    files, Debs: []string{deb}, BootScript: script, BootTimeout: 12 * time.Minute})
			if err != nil {
				f.t.Errorf("boot %s: %v", name, err)
				return
			}
			f.t.Cleanup(func() {
				if f.t.Failed() {
					f.t.Logf("%s console (last 40 lines):\n%s", name, h.ConsoleTail(40))
					cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					if res, err := h.Run(cctx, "journalctl --merge -u stent-agent --no-pager -n 60 -o short-iso; ps -eo pid,etime,time,args --forest | grep -v \"\\[\" | tail -40"); err == nil {
						f.t.Logf("%s agent log:\n%s", name, res.Stdout)
					}
					cancel()
				}
				h.Kill()
			})
			mu.Lock()
			hosts[name] = &vmHost{Host: h}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if f.t.Failed() {
		f.t.FailNow()
	}
	// Wait for every agent's first check-in with its kernel situation.
	deadline := time.Now().Add(15 * time.Minute)
	for {
		var hs []api.Host
		f.do(http.MethodGet, api.PathHosts, nil, &hs)
		n := 0
		for _, h := range hs {
			if vh := hosts[h.Hostname]; vh != nil && h.KernelRelease != "" {
				vh.id = h.ID
				n++
			}
		}
		if n == len(names) {
			return hosts
		}
		if time.Now().After(deadline) {
			for name, h := range hosts {
				res, _ := h.Run(ctx, "systemctl status stent-agent --no-pager -n 20; cat /var/log/debvm-boot.log")
				f.t.Logf("%s: %s", name, res.Stdout)
			}
			f.t.Fatalf("after 15 minutes %d of %d hosts have checked in: %+v", n, len(names), hs)
		}
		time.Sleep(2 * time.Second)
	}
}

// monitor logs the kernel rollouts and every host's reboot state each
// minute until ctx ends, so that a slow run shows where it is.
func (f *fleet) monitor(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var krs []api.KernelRollout
		var rs api.RebootStatus
		err1 := f.admin.Do(cctx, http.MethodGet, api.PathKernelRollouts, nil, &krs)
		err2 := f.admin.Do(cctx, http.MethodGet, api.PathReboots, nil, &rs)
		cancel()
		if err1 != nil || err2 != nil {
			continue
		}
		var b strings.Builder
		for _, r := range krs {
			fmt.Fprintf(&b, " rollout %s %s %v;", r.ID, r.State, r.Counts)
		}
		for _, h := range rs.Hosts {
			fmt.Fprintf(&b, " %s %s on %s wait=%q blockers=%q lease=%s;", h.Hostname, h.State, h.Kernel, h.Wait, h.Blockers, h.Lease)
		}
		f.t.Logf("%s:%s", time.Now().Format(time.TimeOnly), b.String())
	}
}

// downtime is when a host was away for a reboot, read from its console
// alone: from the last line before the new kernel's "Linux version" line
// (the old system's last words) to the line that says the guest is up.
type downtime struct {
	host       string
	kernel     string
	start, end time.Time
}

var upRE = regexp.MustCompile(`debvm: \S+ up on (\S+)`)

// downtimes lists a host's reboots from its console.
func downtimes(name string, h *debvm.Host) []downtime {
	lines := h.Console()
	boots := h.Boots()
	var out []downtime
	for _, b := range boots[1:] {
		d := downtime{host: name, kernel: b.Kernel}
		for i := b.Line - 1; i >= 0; i-- {
			if strings.TrimSpace(lines[i].Text) != "" {
				d.start = lines[i].Time
				break
			}
		}
		for _, l := range lines[b.Line:] {
			if m := upRE.FindStringSubmatch(l.Text); m != nil {
				d.end = l.Time
				break
			}
		}
		out = append(out, d)
	}
	return out
}

func kernelsInstalled(t *testing.T, ctx context.Context, h *vmHost) []string {
	t.Helper()
	res, err := h.Run(ctx, `dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'linux-image-[0-9]*' | awk '$1=="ii"{print $2}'`)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Fields(res.Stdout)
	slices.Sort(out)
	return out
}
