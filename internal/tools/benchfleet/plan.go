package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/internal/fleetsim"
	"github.com/stent-dev/stent/internal/loadavg"
	"github.com/stent-dev/stent/internal/synthfleet"
	"github.com/stent-dev/stent/inventory"
)

// runPlan measures the live plan through a running stent-server (-plan):
// the server keeps the synthetic feeds of internal/synthfleet (--feed) and
// its policy, and o.n simulated agents send the synthetic fleet's real
// inventories. It times, through the admin API:
//   - the plan of the whole fleet after a feed update: the changelog gains
//     an upload, POST /v1/admin/feeds/refresh, until GET /v1/admin/plan
//     shows the new feed generation and every host planned after the
//     refresh began;
//   - one host's new inventory (a check-in as that host) until GET
//     /v1/admin/plan?host= shows it evaluated after the check-in began;
//   - the dashboard's overview page (GET /ui/ with a session) and hosts
//     page;
//
// and reports the server's peak RSS.
func runPlan(ctx context.Context, o options) error {
	agentsDir, dir, cleanup, err := workDirs(o)
	if err != nil {
		return err
	}
	defer cleanup()
	sc := synthfleet.Config{Hosts: o.n, CVEs: 5000, Uploads: 100, Kernels: 16, Seed: 1}
	feedsDir := filepath.Join(dir, "feeds")
	specs, err := synthfleet.WriteFeeds(feedsDir, sc)
	if err != nil {
		return err
	}
	extra := []string{"--feed-interval", "24h"}
	for _, f := range specs {
		extra = append(extra, "--feed", string(f.Kind)+"="+f.Location)
	}
	sp, err := startServer(ctx, o, dir, extra)
	if err != nil {
		return err
	}
	defer sp.stop()
	admin := sp.admin
	if _, err := admin.PutPolicy(ctx, api.PolicyUpload{File: "synthfleet.json", Source: synthfleet.Policy}); err != nil {
		return err
	}

	// The inventories, collected now (an old one is never compliant).
	invs := synthfleet.MakeFleet(sc)
	raw := make([]json.RawMessage, len(invs))
	for i, inv := range invs {
		inv.CollectedAt = time.Now().UTC()
		if raw[i], err = json.Marshal(inv); err != nil {
			return err
		}
	}
	et, err := admin.CreateEnrollToken(ctx, api.EnrollTokenRequest{Name: "bench", TTL: api.Duration(time.Hour)})
	if err != nil {
		return err
	}
	start := time.Now()
	fleet, err := fleetsim.Enroll(ctx, fleetsim.Config{
		Server: sp.url, Fingerprint: sp.fp, EnrollToken: et.Secret, N: o.n, Kernel: invs[0].Kernel.Release, Keys: bundle.NewKeyring(sp.pub),
		Dir: agentsDir, HealthDelay: o.healthDelay, Spread: o.spread, ApplyDelay: o.applyDelay,
		MaxBackoff: 10 * time.Second, SpreadSources: true, Log: slog.New(slog.DiscardHandler),
		Inventory: func(i int) json.RawMessage { return raw[i] },
	})
	if err != nil {
		return err
	}
	logf("enrolled %d agents in %.1f s", o.n, time.Since(start).Seconds())
	start = time.Now()
	fleet.Start(ctx)
	defer fleet.Stop()
	var plan *api.PlanPage
	if err := waitFor(ctx, 10*time.Minute, func() (bool, error) {
		plan, err = admin.Plan(ctx, api.PlanQuery{Limit: 1})
		if err != nil {
			return false, err
		}
		if plan.Error != "" {
			return false, nil
		}
		return plan.Hosts == o.n && plan.Failed == 0, nil
	}); err != nil {
		return fmt.Errorf("every host planned: %w (last: %d hosts, %d without a plan, %q)", err, plan.Hosts, plan.Failed, plan.Error)
	}
	logf("load average %s; server --memory-limit %q", loadavg.String(), o.memLimit)
	logf("all %d agents sent their inventory and are planned after %.1f s: %d kernel situation groups, feed generation %d, server RSS %d MB",
		o.n, time.Since(start).Seconds(), plan.Groups, plan.FeedGeneration, rssMB(sp.pid, "VmRSS"))
	time.Sleep(3 * time.Second)

	// A feed update: the changelog gains an upload every host lacks.
	stopProf := sp.profile(o.profile, "plan-feeds", 30*time.Second)
	var feedTimes []time.Duration
	for round := 1; round <= 3; round++ {
		sc.Uploads++
		if _, err := synthfleet.WriteFeeds(feedsDir, sc); err != nil {
			return err
		}
		gen := plan.FeedGeneration
		cpu0 := procCPU(sp.pid)
		t0 := time.Now()
		if _, err := admin.RefreshFeeds(ctx); err != nil {
			return err
		}
		refreshed := time.Since(t0)
		if err := pollFast(ctx, 5*time.Minute, func() (bool, error) {
			plan, err = admin.Plan(ctx, api.PlanQuery{Limit: 1})
			if err != nil {
				return false, err
			}
			return plan.FeedGeneration > gen && plan.Hosts == o.n && plan.Failed == 0 && !plan.GeneratedAt.Before(t0), nil
		}); err != nil {
			return fmt.Errorf("re-plan after the feed update: %w", err)
		}
		d := time.Since(t0)
		feedTimes = append(feedTimes, d)
		logf("feed update %d: every host re-planned %.2f s after the refresh began (the refresh call answered after %.2f s; %d groups; server CPU %.2f s), server RSS %d MB",
			round, d.Seconds(), refreshed.Seconds(), plan.Groups, procCPU(sp.pid)-cpu0, rssMB(sp.pid, "VmRSS"))
		time.Sleep(2 * time.Second)
	}

	stopProf()

	// One host's new inventory: a live patch applied, then gone again.
	k := o.n / 2
	h := fleet.Hosts[k]
	host := &api.Client{BaseURL: sp.url, Token: h.Creds.Credential, HTTP: sp.hc}
	var invTimes []time.Duration
	for round := 1; round <= 6; round++ {
		inv := *invs[k]
		if round%2 == 1 {
			inv.LivePatches = append(slices.Clone(inv.LivePatches), inventory.LivePatch{Name: fmt.Sprintf("lp-bench-%d", round), Enabled: true, Manifest: true, CVEs: []string{synthfleet.CVEID(round)}})
		}
		inv.CollectedAt = time.Now().UTC()
		b, err := json.Marshal(&inv)
		if err != nil {
			return err
		}
		cpu0 := procCPU(sp.pid)
		t0 := time.Now()
		if err := host.Do(ctx, http.MethodPost, api.PathSync, api.Checkin{KernelRelease: inv.Kernel.Release, Health: api.HealthOK, Inventory: b}, &api.SyncResponse{}); err != nil {
			return err
		}
		if err := pollFast(ctx, time.Minute, func() (bool, error) {
			p, err := admin.Plan(ctx, api.PlanQuery{Host: h.Creds.HostID, Limit: 1})
			if err != nil {
				return false, err
			}
			return len(p.Page) == 1 && p.Page[0].Plan != nil && p.Page[0].EvaluatedAt.After(t0), nil
		}); err != nil {
			return fmt.Errorf("one host's inventory in the plan: %w", err)
		}
		d := time.Since(t0)
		invTimes = append(invTimes, d)
		logf("inventory %d of host %s: in GET /v1/admin/plan after %.0f ms (server CPU %.0f ms, with the polls)", round, h.Creds.HostID, float64(d.Microseconds())/1000, (procCPU(sp.pid)-cpu0)*1000)
		time.Sleep(500 * time.Millisecond)
	}

	// The dashboard, logged in.
	ui, err := uiLogin(ctx, sp)
	if err != nil {
		return err
	}
	pages := map[string][]time.Duration{}
	for _, path := range []string{"/ui/", "/ui/hosts", "/ui/actions"} {
		for range 20 {
			t0 := time.Now()
			if err := uiGet(ctx, ui, sp.url+path); err != nil {
				return err
			}
			pages[path] = append(pages[path], time.Since(t0))
		}
		logf("GET %s: %s over 20 requests", path, spread(pages[path]))
	}
	if o.report {
		if err := timeReport(ctx, sp, o.n); err != nil {
			return err
		}
	}
	peak := rssMB(sp.pid, "VmHWM")
	logf("server peak RSS %d MB; load average %s", peak, loadavg.String())
	fmt.Printf("plan: %d agents with inventories, %d groups: re-plan after a feed update %s; one inventory in the plan %s; overview %s; server peak RSS %d MB\n",
		o.n, plan.Groups, spread(feedTimes), spread(invTimes), spread(pages["/ui/"]), peak)
	return nil
}

// timeReport times the compliance report of every host as stent fleet
// report reads it (made by the server, each host's section), with the
// most heap it took here and the server's CPU.
func timeReport(ctx context.Context, sp *serverProc, n int) error {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()
	cpu0 := procCPU(sp.pid)
	t0 := time.Now()
	wr, err := sp.admin.FleetReport(ctx, api.PlanQuery{}, 90)
	close(done)
	if err != nil {
		return fmt.Errorf("the report of every host: %w", err)
	}
	d := time.Since(t0)
	var b countWriter
	if err := wr.Report.WriteHTML(&b); err != nil {
		return err
	}
	if len(wr.Report.Hosts) != n {
		return fmt.Errorf("the report has %d hosts, want %d", len(wr.Report.Hosts), n)
	}
	logf("report of %d hosts: %.1f s, server CPU %.1f s; heap here at most %d MB above the %d MB before; its HTML %d MB; server RSS %d MB",
		len(wr.Report.Hosts), d.Seconds(), procCPU(sp.pid)-cpu0,
		(peak.Load()-min(base, peak.Load()))>>20, base>>20, b.n>>20, rssMB(sp.pid, "VmRSS"))
	return nil
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// spread is "min-max (median M)" of ds in milliseconds or seconds.
func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	f := func(d time.Duration) string {
		if d >= time.Second {
			return fmt.Sprintf("%.2f s", d.Seconds())
		}
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%s to %s (median %s)", f(s[0]), f(s[len(s)-1]), f(s[len(s)/2]))
}

// uiLogin opens a dashboard session with the admin token and returns a
// client that carries its cookie.
func uiLogin(ctx context.Context, sp *serverProc) (*http.Client, error) {
	c, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: sp.fp})
	if err != nil {
		return nil, err
	}
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sp.url+"/ui/login", strings.NewReader(url.Values{"token": {sp.admin.Token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		return nil, fmt.Errorf("dashboard login: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	return c, nil
}

func uiGet(ctx context.Context, c *http.Client, u string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// pollFast is waitFor polling every 20 ms, for the times measured here.
// Each poll is a GET /v1/admin/plan: one pass over the server's hosts.
func pollFast(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
