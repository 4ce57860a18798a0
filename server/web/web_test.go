package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/server/web"
)

// get fetches path with c and returns the status, the Location header and
// the body.
func get(t *testing.T, c *http.Client, base, path string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func post(t *testing.T, c *http.Client, base, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs c in with token and returns the session's CSRF token.
func login(t *testing.T, c *http.Client, base, token string) string {
	t.Helper()
	resp, body := post(t, c, base, "/ui/login", url.Values{"token": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("POST /ui/login = %d %s, want 303 to /ui/: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == web.CookieName {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/ui/" {
		t.Fatalf("session cookie = %+v, want HttpOnly, Secure, SameSite=Strict, Path=/ui/", cookie)
	}
	_, _, page := get(t, c, base, "/ui/")
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("overview after login has no CSRF token:\n%s", page)
	}
	return m[1]
}

// TestSessionsCSRFAndRoles drives the dashboard over plain HTTP against a
// real server with simulated hosts: logging in, the cookie's attributes, a
// forged cookie, CSRF and cross-origin refusals, a viewer refused a change
// by the API behind the page, host filters, logout.
func TestSessionsCSRFAndRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and 12 simulated hosts")
	}
	e := startEnv(t, 12, 10*time.Second)
	ctx := context.Background()
	c := e.browser()

	if st, loc, _ := get(t, c, e.url, "/ui/"); st != http.StatusSeeOther || loc != "/ui/login" {
		t.Errorf("GET /ui/ without a session = %d to %q, want 303 to /ui/login", st, loc)
	}
	resp, body := post(t, c, e.url, "/ui/login", url.Values{"token": {"sta_not-a-token"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not an admin token") {
		t.Errorf("login with an unknown token = %d, want 401 saying why:\n%s", resp.StatusCode, body)
	}
	csrf := login(t, c, e.url, e.admin.Token)

	// The overview's counts are the API's.
	fleet, err := e.admin.Fleet(ctx)
	e.ok(err)
	_, _, page := get(t, c, e.url, "/ui/")
	for id, want := range map[string]int{"count-hosts": fleet.Hosts, "count-online": fleet.Online, "count-revoked": fleet.Revoked} {
		if !strings.Contains(page, fmt.Sprintf(`id="%s">%d<`, id, want)) {
			t.Errorf("overview: %s is not %d (the API's)", id, want)
		}
	}
	// The live plan's section says why there is no plan: no feed here.
	plan, err := e.admin.Plan(ctx, api.PlanQuery{Limit: 1})
	e.ok(err)
	if plan.Error == "" || !strings.Contains(page, `id="plan-error"`) {
		t.Errorf("overview's plan section: API error %q, want a plan error shown as #plan-error", plan.Error)
	}
	if ext := regexp.MustCompile(`(src|href)="(https?:)?//`).FindString(page); ext != "" {
		t.Errorf("overview loads %s...: want nothing from outside the server", ext)
	}

	// Hosts filtered by label: the page's total is the API's.
	dbs, err := e.admin.SearchHosts(ctx, api.HostQuery{Labels: map[string]string{"role": "db"}})
	e.ok(err)
	if dbs.Total != 4 {
		t.Errorf("SearchHosts(role=db).Total = %d, want 4", dbs.Total)
	}
	_, _, page = get(t, c, e.url, "/ui/hosts?label=role%3Ddb")
	if !strings.Contains(page, `data-total="4"`) || strings.Count(page, `class="host-link"`) != 4 {
		t.Errorf("hosts page for role=db does not show the 4 hosts:\n%s", page)
	}

	// A host page, with the reason it has no plan (no inventory sent).
	if st, _, page := get(t, c, e.url, "/ui/hosts/"+dbs.Hosts[0].ID); st != http.StatusOK || !strings.Contains(page, `id="host-plan-error"`) || !strings.Contains(page, kernel) {
		t.Errorf("host page = %d, want 200 with its kernel and why it has no plan:\n%s", st, page)
	}

	r := e.rollout("lp_web_1")
	path := "/ui/rollouts/" + r.ID + "/pause"
	// Without the CSRF token, or from another origin, nothing changes.
	if resp, _ := post(t, c, e.url, path, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause without a CSRF token = %d, want 403", resp.StatusCode)
	}
	if resp, _ := post(t, c, e.url, path, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site pause = %d, want 403", resp.StatusCode)
	}
	if got, _ := e.admin.Rollout(ctx, r.ID, false); got.State != api.RolloutRunning {
		t.Fatalf("rollout is %s after refused pauses, want running", got.State)
	}

	// A viewer's page has no buttons, and the API refuses the change.
	v := e.browser()
	vcsrf := login(t, v, e.url, e.token("watcher", api.RoleViewer))
	_, _, page = get(t, v, e.url, "/ui/rollouts/"+r.ID)
	if strings.Contains(page, `id="pause"`) || !strings.Contains(page, `id="readonly"`) {
		t.Errorf("viewer's rollout page shows the pause button")
	}
	resp, body = post(t, v, e.url, path, url.Values{"csrf": {vcsrf}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "has role viewer") {
		t.Errorf("viewer's pause = %d, want 403 from the API:\n%s", resp.StatusCode, body)
	}
	if got, _ := e.admin.Rollout(ctx, r.ID, false); got.State != api.RolloutRunning {
		t.Fatalf("rollout is %s after a viewer's pause, want running", got.State)
	}
	// The operator's pause goes through.
	resp, _ = post(t, c, e.url, path, url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("pause = %d, want 303 back to the rollout", resp.StatusCode)
	}
	if got, _ := e.admin.Rollout(ctx, r.ID, false); got.State != api.RolloutPaused {
		t.Errorf("rollout is %s after the pause, want paused", got.State)
	}
	au, err := e.admin.Audit(ctx, api.AuditQuery{Action: "rollout.pause", Target: r.ID})
	e.ok(err)
	if len(au) != 1 || !strings.Contains(au[0].Actor, "bootstrap") {
		t.Errorf("audit of the pause = %+v, want one entry by the bootstrap token", au)
	}

	// A forged cookie is refused, and the login page says so.
	f := e.browser()
	u, _ := url.Parse(e.url + "/ui/")
	f.Jar.SetCookies(u, []*http.Cookie{{Name: web.CookieName, Value: "forged-" + strings.Repeat("A", 40), Path: "/ui/"}})
	if st, loc, _ := get(t, f, e.url, "/ui/hosts"); st != http.StatusSeeOther || loc != "/ui/login?expired=1" {
		t.Errorf("forged cookie: GET /ui/hosts = %d to %q, want 303 to /ui/login?expired=1", st, loc)
	}

	// Logging out ends the session on the server, not only in the browser.
	var old []*http.Cookie
	old = append(old, c.Jar.Cookies(u)...)
	if resp, _ := post(t, c, e.url, "/ui/logout", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout = %d, want 303", resp.StatusCode)
	}
	replay := e.browser()
	replay.Jar.SetCookies(u, old)
	if st, _, _ := get(t, replay, e.url, "/ui/"); st != http.StatusSeeOther {
		t.Errorf("the logged-out cookie still opens the overview (%d)", st)
	}
}

// TestVendoredHTMX: the htmx file is the release VENDOR.md names.
func TestVendoredHTMX(t *testing.T) {
	b, err := os.ReadFile("static/htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	doc, err := os.ReadFile("static/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sum[:]); !strings.Contains(string(doc), got) {
		t.Errorf("static/htmx.min.js has sha256 %s, which static/VENDOR.md does not name: update the table", got)
	}
	if !strings.Contains(string(b), `version:"2.0.11"`) {
		t.Errorf("static/htmx.min.js is not htmx 2.0.11 as VENDOR.md says")
	}
}
