package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/server"
	"github.com/stent-dev/stent/store"
)

// BenchmarkPages10k times the dashboard's pages, over HTTPS with a
// session, on a server whose store holds 10,000 hosts (written to the
// store before the server starts, as a restarted server finds them):
// ten kernels, three roles, a live patch on half of them.
func BenchmarkPages10k(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "stent.db"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	inv := benchInventories(b)
	err = st.Update(ctx, func(tx *store.Tx) error {
		for i := range n {
			h := &store.Host{
				ID: fmt.Sprintf("h_%016x", i), Hostname: fmt.Sprintf("host-%05d", i), TokenHash: fmt.Sprintf("%064x", i),
				Channel: "stable", Labels: map[string]string{"role": []string{"web", "db", "cache"}[i%3], "dc": fmt.Sprintf("dc%d", i%4), "rack": fmt.Sprintf("r%02d", i%40)},
				EnrolledAt: now.Add(-time.Hour), LastSeen: now, KernelRelease: fmt.Sprintf("6.1.0-%d-amd64", 50+i%10), Health: api.HealthOK,
			}
			if i%2 == 0 {
				h.Patches = []api.PatchState{{Name: "lp_cve_2026_1", Level: 1, Enabled: true}}
			}
			if err := tx.InsertHost(ctx, h); err != nil {
				return err
			}
			// An inventory of policy/testdata/fleet: the live plan has
			// four kernel situations of 2,500 hosts each.
			c := &store.Checkin{HostID: h.ID, At: now, Checkin: api.Checkin{Hostname: h.Hostname, Inventory: inv(i)}}
			if err := tx.SaveCheckin(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("stored %d hosts in %v", n, time.Since(now))
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.AcceptAnySigner = dir, true
	cfg.Feeds = planFeeds
	sctx, cancel := context.WithCancel(ctx)
	srv, err := server.New(sctx, cfg, server.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("server up after %v", time.Since(now))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	defer func() { cancel(); <-done }()
	tok, err := os.ReadFile(srv.BootstrapTokenFile())
	if err != nil {
		b.Fatal(err)
	}
	e := &env{t: b, url: "https://" + ln.Addr().String(), fp: srv.Fingerprint()}
	c := e.browser()
	resp, err := c.PostForm(e.url+"/ui/login", url.Values{"token": {strings.TrimSpace(string(tok))}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	admin := &api.Client{BaseURL: e.url, Token: strings.TrimSpace(string(tok)), HTTP: c}
	var plan *api.PlanPage
	e.waitFor(5*time.Minute, "the live plan of every host", func() bool {
		plan, err = admin.Plan(ctx, api.PlanQuery{Limit: 1})
		e.ok(err)
		return plan.Hosts == n && plan.Failed == 0 && plan.Error == ""
	})
	b.Logf("live plan of %d hosts in %d groups after %v", plan.Hosts, plan.Groups, time.Since(now))
	top, err := admin.PlanCVEs(ctx, api.CVEQuery{Limit: 1})
	e.ok(err)
	b.Logf("%d open CVEs on %d hosts; the most severe, %s, on %d hosts", top.Open, top.Hosts, top.CVEs[0].CVE, top.CVEs[0].Hosts)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("heap in use (server and benchmark, one process): %d MiB", ms.HeapInuse>>20)
	for _, p := range []struct{ name, path string }{
		{"overview", "/ui/"},
		{"hosts", "/ui/hosts"},
		{"hosts-label-kernel", "/ui/hosts?label=role%3Ddb&kernel=6.1.0-53-amd64"},
		{"hosts-search-page-20", "/ui/hosts?q=host-0&offset=950"},
		{"host", "/ui/hosts/h_0000000000000007"},
		{"reboots", "/ui/reboots"},
		{"audit", "/ui/audit"},
		{"cves", "/ui/cves"},
		{"cves-high-page-10", "/ui/cves?severity=high&offset=450"},
		{"cve-10k-hosts", "/ui/cves/" + top.CVEs[0].CVE},
		{"report-250-hosts", "/ui/report?label=rack%3Dr07"},
		{"feeds", "/ui/feeds"},
		{"rollouts", "/ui/rollouts"},
	} {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := c.Get(e.url + p.path)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s = %d", p.path, resp.StatusCode)
				}
			}
		})
	}
}

// benchInventories gives host i one of policy/testdata/fleet's four Debian
// inventories, under the host's name.
func benchInventories(b *testing.B) func(i int) json.RawMessage {
	names := []string{"web1", "web2", "db1", "app1"}
	var invs [][]byte
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("..", "..", "policy", "testdata", "fleet", name+".json"))
		if err != nil {
			b.Fatal(err)
		}
		invs = append(invs, data)
	}
	return func(i int) json.RawMessage {
		k := i % len(names)
		return json.RawMessage(strings.Replace(string(invs[k]), `"hostname": "`+names[k]+`"`, fmt.Sprintf(`"hostname": "host-%05d"`, i), 1))
	}
}
