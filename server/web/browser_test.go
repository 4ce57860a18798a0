package web_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/testenv"
	"github.com/stent-dev/stent/server/web"
)

// spkiPin returns the base64 SHA-256 of the server certificate's public
// key, which Chromium's --ignore-certificate-errors-spki-list trusts: the
// browser accepts this one self-signed certificate and no other.
func spkiPin(t *testing.T, e *env) string {
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.url, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cert := conn.ConnectionState().PeerCertificates[0]
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(cert.Raw)); got != e.fp {
		t.Fatalf("server certificate %s, want the pinned %s", got, e.fp)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browserEnv is a headless Chromium tab on the env's server.
type browserEnv struct {
	t   *testing.T
	e   *env
	ctx context.Context
	// shots is where screenshots go (STENT_UI_SCREENSHOTS); empty: none.
	shots string
}

func (b *browserEnv) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	run(b, what, chromedp.Steps(steps...))
}

// run runs a with a minute's timeout and fails the test naming what.
func run[T any](b *browserEnv, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitJS waits until the JavaScript expression cond is true on the page.
func waitJS(cond string) chromedp.Action[chromedp.Void] {
	p := chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(45*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := p(ctx, t)
		return chromedp.Void{}, err
	}
}

// htmxReady waits until htmx has taken over the element sel (its hx-
// attributes processed): a click before that does nothing (hx-post on a
// button) or submits the form natively, a reload. On a loaded machine the
// page shows its buttons before htmx has run.
func htmxReady(sel string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!(e && e['htmx-internal-data']); })()`, sel))
}

// js runs a JavaScript statement for its effect.
func js(stmt string) chromedp.Action[chromedp.Void] {
	e := chromedp.Evaluate[any](stmt)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := e(ctx, t)
		return chromedp.Void{}, err
	}
}

func (b *browserEnv) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(run(b, "read "+sel, chromedp.TextContent(chromedp.CSS(sel))))
}

// eval returns the value of a JavaScript expression (awaited if a promise).
func eval[T any](b *browserEnv, expr string) T {
	b.t.Helper()
	return run(b, "evaluate "+expr, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

func (b *browserEnv) screenshot(name string) {
	if b.shots == "" {
		return
	}
	png := run(b, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(b.shots, "dashboard-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browserEnv) login(token string) {
	b.t.Helper()
	b.do("log in",
		chromedp.Navigate(b.e.url+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#count-hosts")),
	)
}

func (b *browserEnv) logout() {
	b.t.Helper()
	b.do("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
}

// TestBrowser drives Debian's Chromium, headless, against a real
// stent-server with 30 simulated agents: log in, the overview's counts
// are the API's, filter hosts, open a host, pause and resume a rollout
// and watch the agents react on a page that never reloads, the audit log,
// a viewer without buttons whose forced request the API refuses, log out,
// a forged cookie refused. With STENT_UI_SCREENSHOTS=DIR it saves the
// main pages there as PNG (make screenshots: docs/).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium, a server and 30 simulated hosts")
	}
	testenv.NeedTools(t, "chromium")
	const n = 30
	e := startEnv(t, n, 8*time.Second)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiPin(t, e)),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browserEnv{t: t, e: e, ctx: ctx, shots: os.Getenv("STENT_UI_SCREENSHOTS")}
	api0 := context.Background()

	// Log in; the counts are the API's.
	b.login(e.admin.Token)
	fleet, err := e.admin.Fleet(api0)
	e.ok(err)
	for sel, want := range map[string]int{"#count-hosts": fleet.Hosts, "#count-online": fleet.Online, "#count-offline": fleet.Offline, "#count-revoked": fleet.Revoked} {
		if got := b.text(sel); got != fmt.Sprint(want) {
			t.Errorf("overview %s = %s, want %d (the API's)", sel, got, want)
		}
	}
	var role string
	role = eval[string](b, `document.querySelector('#who').dataset.role`)
	if role != api.RoleAdmin {
		t.Errorf("logged in as role %q, want admin", role)
	}

	// Filter hosts by label: the table is swapped in place and the URL
	// says what it shows.
	var marker int
	b.do("filter hosts",
		chromedp.Navigate(e.url+"/ui/hosts"),
		chromedp.WaitVisible(chromedp.CSS("#host-filter")),
		htmxReady("#host-filter"),
		js(`window.stentMarker = 42`),
		chromedp.SendKeys(chromedp.CSS("#label"), "role=db"),
		chromedp.Click(chromedp.CSS("#filter")),
		waitJS(`document.querySelector('#hosts-total').dataset.total === '10'`),
	)
	var rows int
	var loc string
	rows = eval[int](b, `document.querySelectorAll('a.host-link').length`)
	marker = eval[int](b, `window.stentMarker`)
	loc = eval[string](b, `location.search`)
	if rows != 10 || marker != 42 || !strings.Contains(loc, "label=role%3Ddb") {
		t.Errorf("filtered hosts: %d rows, marker %d, location %q; want 10 rows, no reload (marker 42), label in the URL", rows, marker, loc)
	}
	b.screenshot("hosts")

	// Open a host.
	b.do("open a host", chromedp.Click(chromedp.CSS("a.host-link")), chromedp.WaitVisible(chromedp.CSS("#host-kernel")))
	if got := b.text("#host-kernel"); got != kernel {
		t.Errorf("host page kernel = %q, want %q", got, kernel)
	}
	if got := b.text("#host-history"); !strings.Contains(got, "host.enroll") {
		t.Errorf("host history = %q, want its host.enroll entry", got)
	}
	b.screenshot("host")

	// Pause a rollout while its canary applies: the other hosts are not
	// told. Resume it: they apply, and the page follows without a reload.
	r := e.rollout("lp_browser_1")
	b.do("pause the rollout",
		chromedp.Navigate(e.url+"/ui/rollouts/"+r.ID),
		chromedp.WaitVisible(chromedp.CSS("#pause")),
		htmxReady("#pause"),
		js(`window.stentMarker = 7`),
		chromedp.Click(chromedp.CSS("#pause")),
		waitJS(`document.querySelector('#rollout-state').textContent === 'paused'`),
	)
	if got, err := e.admin.Rollout(api0, r.ID, false); err != nil || got.State != api.RolloutPaused {
		t.Fatalf("after the page's pause the API says %+v, %v; want paused", got, err)
	}
	canary := e.fleet.Hosts[0]
	e.waitFor(30*time.Second, "the canary applied the patch", func() bool { return canary.Runtime.Loaded("lp_browser_1") })
	b.do("see the canary healthy", waitJS(`document.querySelector('#c-healthy').textContent === '1'`))
	time.Sleep(time.Second)
	for _, h := range e.fleet.Hosts[1:] {
		if h.Runtime.Applies("lp_browser_1") != 0 {
			t.Errorf("%s applied lp_browser_1 while the rollout was paused", h.Name)
		}
	}
	b.do("resume the rollout",
		htmxReady("#resume"),
		chromedp.Click(chromedp.CSS("#resume")),
		waitJS(`document.querySelector('#rollout-state').textContent === 'completed'`),
		waitJS(fmt.Sprintf(`document.querySelector('#c-healthy').textContent === '%d'`, n)),
	)
	marker = eval[int](b, `window.stentMarker`)
	if marker != 7 {
		t.Errorf("the rollout page reloaded (marker %d, want 7): it must update in place", marker)
	}
	for _, h := range e.fleet.Hosts {
		if got := h.Runtime.Applies("lp_browser_1"); got != 1 {
			t.Errorf("%s applied lp_browser_1 %d times, want 1", h.Name, got)
		}
	}
	b.screenshot("rollout")

	// The overview, now with a patch on every host, and the audit log.
	b.do("overview", chromedp.Navigate(e.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#count-hosts")))
	b.screenshot("overview")
	b.do("audit log", chromedp.Navigate(e.url+"/ui/audit"), chromedp.WaitVisible(chromedp.CSS("#audit")))
	if got := b.text("#audit"); !strings.Contains(got, "rollout.pause") || !strings.Contains(got, "rollout.resume") {
		t.Errorf("audit page lacks the pause and resume:\n%s", got)
	}
	b.screenshot("audit")
	b.logout()

	// A viewer sees no buttons; the request forced from its page is
	// refused by the API, and so is the API called with its token.
	viewer := e.token("watcher", api.RoleViewer)
	b.login(viewer)
	b.do("viewer's rollout page", chromedp.Navigate(e.url+"/ui/rollouts/"+r.ID), chromedp.WaitVisible(chromedp.CSS("#readonly")))
	var buttons int
	buttons = eval[int](b, `document.querySelectorAll('#pause, #resume, #revert').length`)
	if buttons != 0 {
		t.Errorf("viewer's rollout page has %d action buttons, want none", buttons)
	}
	var status int
	status = eval[int](b, fmt.Sprintf(`fetch('/ui/rollouts/%s/revert', {method: 'POST', headers: JSON.parse(document.body.getAttribute('hx-headers'))}).then(r => r.status)`, r.ID))
	if status != http.StatusForbidden {
		t.Errorf("viewer's forced revert = %d, want 403", status)
	}
	if _, err := e.client(viewer).RolloutAction(api0, r.ID, "revert", api.RolloutActionRequest{}); !api.IsStatus(err, http.StatusForbidden) {
		t.Errorf("viewer's revert through the API = %v, want 403", err)
	}
	if got, _ := e.admin.Rollout(api0, r.ID, false); got.State != api.RolloutCompleted {
		t.Errorf("rollout is %s after the viewer's attempts, want completed", got.State)
	}
	b.logout()
	b.screenshot("login")

	// A forged cookie opens nothing.
	b.do("forged cookie",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			yes := true
			_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{
				Name: web.CookieName, Value: "forged-" + strings.Repeat("A", 43), URL: e.url + "/ui/", Path: "/ui/", HTTPOnly: &yes, Secure: &yes})
			return err
		}),
		chromedp.Navigate(e.url+"/ui/hosts"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
	)
	loc = eval[string](b, `location.pathname + location.search`)
	if loc != "/ui/login?expired=1" || !strings.Contains(b.text("#flash"), "expired") {
		t.Errorf("forged cookie landed on %q saying %q, want the login page saying the session expired", loc, b.text("#flash"))
	}
}
