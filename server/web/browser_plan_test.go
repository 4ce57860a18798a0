package web_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/testenv"
)

// TestBrowserPlanPages drives Debian's Chromium, headless, against a real
// server with real feeds and 6 simulated hosts whose inventories it plans:
// the overview's exposure plots and CVEs, a host's open CVE opened from
// its page, the CVE's hosts, the printable report (printed to PDF, its
// print rules applied), the feeds, and a rollout whose progress arrives by
// server-sent events on a page that never reloads nor polls. With
// STENT_UI_SCREENSHOTS=DIR it saves these pages there (make screenshots).
func TestBrowserPlanPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium, a server with feeds and 6 simulated hosts")
	}
	testenv.NeedTools(t, "chromium")
	const n = 6
	e := startPlanEnv(t, n, 3*time.Second)
	ctx := context.Background()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"),
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiPin(t, e)),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browserEnv{t: t, e: e, ctx: bctx, shots: os.Getenv("STENT_UI_SCREENSHOTS")}
	e.waitFor(30*time.Second, "an exposure snapshot", func() bool {
		h, err := e.admin.ExposureHistory(ctx, time.Time{}, 0)
		e.ok(err)
		return len(h.Points) > 0 && h.Points[len(h.Points)-1].Hosts == n
	})
	b.login(e.admin.Token)
	b.do("overview's plots", waitJS(`document.querySelector('#plot-severity polyline, #plot-severity circle') !== null`))
	b.screenshot("overview-plan")

	// A host's page lists its open CVEs; one opens the CVE's page, which
	// lists the host.
	top, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Limit: 1})
	e.ok(err)
	d, err := e.admin.PlanCVE(ctx, top.CVEs[0].CVE, 0, 1)
	e.ok(err)
	host := d.Page[0]
	b.do("open a CVE from a host",
		chromedp.Navigate(e.url+"/ui/hosts/"+host.HostID),
		chromedp.WaitVisible(chromedp.CSS("#host-cves")),
		chromedp.Click(chromedp.CSS(`#host-cves a.cve-link[href="/ui/cves/`+top.CVEs[0].CVE+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#cve-host-table")),
	)
	if got := eval[string](b, `location.pathname`); got != "/ui/cves/"+top.CVEs[0].CVE {
		t.Errorf("the host's CVE link went to %s", got)
	}
	if got := b.text("#cve-hosts"); got != fmt.Sprint(top.CVEs[0].Hosts) {
		t.Errorf("CVE page: %s hosts, want the API's %d", got, top.CVEs[0].Hosts)
	}
	if n := eval[int](b, `document.querySelectorAll('#cve-host-table a.host-link[href="/ui/hosts/`+host.HostID+`"]').length`); n != 1 {
		t.Errorf("the CVE page does not list host %s", host.Hostname)
	}
	b.screenshot("cve")
	b.do("the CVE list", chromedp.Navigate(e.url+"/ui/cves"), chromedp.WaitVisible(chromedp.CSS("#cves")))
	b.screenshot("cves")

	// The printable report: print rules apply, and it prints.
	b.do("open the report", chromedp.Navigate(e.url+"/ui/report"), chromedp.WaitVisible(chromedp.CSS("#fleet")))
	if sections := eval[int](b, `document.querySelectorAll('section[id^="host-"]').length`); sections != n {
		t.Errorf("the report has %d host sections, want %d", sections, n)
	}
	b.screenshot("report")
	b.do("print media", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return err
	}))
	if mw := eval[string](b, `getComputedStyle(document.body).maxWidth`); mw != "none" {
		t.Errorf("under print media the report's body max-width is %q, want none (its @media print rules)", mw)
	}
	var pdf []byte
	b.do("print the report", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		yes := true
		res, err := cdp.Call(ctx, tg, page.PrintToPDF, page.PrintToPDFParams{PrintBackground: &yes})
		pdf = res.Data
		return err
	}))
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) || len(pdf) < 10000 {
		t.Errorf("the printed report is %d bytes starting %q, want a PDF", len(pdf), pdf[:min(len(pdf), 8)])
	}
	t.Logf("the report printed to a %d-byte PDF", len(pdf))
	b.do("screen media", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
		return err
	}))

	b.do("feeds", chromedp.Navigate(e.url+"/ui/feeds"), chromedp.WaitVisible(chromedp.CSS("#feeds")))
	if rows := eval[int](b, `document.querySelectorAll('#feeds tr.feed').length`); rows < 4 {
		t.Errorf("the feeds page shows %d feeds, want the 4 configured (and the bundles')", rows)
	}
	b.screenshot("feeds")

	// A rollout's progress by server-sent events: the page neither reloads
	// nor polls, and the counts follow the agents.
	b.do("rollouts page", chromedp.Navigate(e.url+"/ui/rollouts"), chromedp.WaitVisible(chromedp.CSS("#live-rollouts")),
		js(`window.stentMarker = 5; window.stentSSE = 0; document.body.addEventListener('htmx:sseMessage', () => window.stentSSE++)`))
	r := e.rollout("lp_sse_browser")
	b.do("the new rollout appears", waitJS(`document.querySelector('#live-rollouts a[href="/ui/rollouts/`+r.ID+`"]') !== null`))
	b.do("open the rollout",
		chromedp.Click(chromedp.CSS(`#live-rollouts a[href="/ui/rollouts/`+r.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#live-progress")),
		js(`window.stentMarker = 6; window.stentSSE = 0; window.stentHealthy = [document.querySelector('#c-healthy').textContent];
			document.body.addEventListener('htmx:sseMessage', () => { window.stentSSE++; window.stentHealthy.push(document.querySelector('#c-healthy').textContent) })`),
		waitJS(fmt.Sprintf(`document.querySelector('#c-healthy').textContent === '%d'`, n)),
		waitJS(`document.querySelector('#rollout-state').textContent === 'completed'`),
	)
	marker := eval[int](b, `window.stentMarker`)
	msgs := eval[int](b, `window.stentSSE`)
	seen := eval[[]string](b, `window.stentHealthy`)
	polling := eval[bool](b, `document.querySelector('#live-progress').dataset.polling === 'true'`)
	t.Logf("rollout page: %d server-sent events, healthy counts seen %v", msgs, seen)
	if marker != 6 || msgs == 0 || polling || len(seen) < 2 || seen[0] == fmt.Sprint(n) {
		t.Errorf("rollout page: marker %d (want 6: no reload), %d events (want some), polling %v, healthy counts %v (want a change to %d)", marker, msgs, polling, seen, n)
	}
	b.screenshot("rollout-live")
	if got := strings.TrimSpace(b.text("#c-healthy")); got != fmt.Sprint(n) {
		t.Errorf("healthy = %s, want %d", got, n)
	}

	// The overview follows the fleet by server-sent events too: a host
	// revoked through the API leaves its counts, the plan's compliance and
	// the hosts past a deadline, on a page that neither reloads nor polls.
	b.do("overview", chromedp.Navigate(e.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#compliance")),
		js(`window.stentMarker = 8; window.stentSSE = 0; document.body.addEventListener('htmx:sseMessage', () => window.stentSSE++)`))
	cves, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Limit: 1})
	e.ok(err)
	if got := b.text("#count-overdue"); got != fmt.Sprint(cves.Overdue) {
		t.Errorf("overview: %s hosts past a deadline, want the API's %d", got, cves.Overdue)
	}
	// The host to revoke: one past a deadline, when there is one, so that
	// the count changes.
	victim, late := e.fleet.Hosts[n-1].Creds.HostID, false
	list, err := e.admin.PlanCVEs(ctx, api.CVEQuery{Limit: api.MaxCVELimit})
	e.ok(err)
	for _, c := range list.CVEs {
		if c.Overdue == 0 || late {
			continue
		}
		d, err := e.admin.PlanCVE(ctx, c.CVE, 0, 50)
		e.ok(err)
		for _, h := range d.Page {
			if h.Overdue {
				victim, late = h.HostID, true
			}
		}
	}
	e.ok(e.admin.RevokeHost(ctx, victim))
	var after *api.CVEPage
	e.waitFor(30*time.Second, "the CVE index without the revoked host", func() bool {
		after, err = e.admin.PlanCVEs(ctx, api.CVEQuery{Limit: 1})
		e.ok(err)
		return after.Hosts < cves.Hosts
	})
	start := time.Now()
	b.do("the overview follows",
		waitJS(`document.querySelector('#count-revoked').textContent === '1'`),
		waitJS(fmt.Sprintf(`document.querySelector('#count-overdue').textContent === '%d'`, after.Overdue)),
		waitJS(fmt.Sprintf(`document.querySelector('#compliance').nextElementSibling.textContent.startsWith('%d hosts')`, n-1)),
	)
	t.Logf("overview: the revoke arrived %v after the CVE index had it; hosts past a deadline %d -> %d (the revoked host was past one: %v)",
		time.Since(start).Round(time.Millisecond), cves.Overdue, after.Overdue, late)
	marker, msgs = eval[int](b, `window.stentMarker`), eval[int](b, `window.stentSSE`)
	polling = eval[bool](b, `document.querySelector('#live').dataset.polling === 'true'`)
	if marker != 8 || msgs == 0 || polling {
		t.Errorf("overview: marker %d (want 8: no reload), %d events (want some), polling %v", marker, msgs, polling)
	}
	if late && after.Overdue != cves.Overdue-1 {
		t.Errorf("revoking a host past a deadline left %d hosts past one", after.Overdue)
	}
}
