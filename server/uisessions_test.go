package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store/storetest"
)

// uiBrowser is an HTTP client with a cookie jar and the server's pin that
// follows no redirect.
func (e *env) uiBrowser() *http.Client {
	e.t.Helper()
	hc, err := api.NewHTTPClient(api.TLSOptions{Fingerprint: e.fp})
	e.ok(err)
	hc.Jar, _ = cookiejar.New(nil)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return hc
}

// uiGet answers the status and Location of GET path.
func (e *env) uiGet(c *http.Client, path string) (int, string, string) {
	e.t.Helper()
	resp, err := c.Get(e.url + path)
	e.ok(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func (e *env) uiPost(c *http.Client, path string, form url.Values) (int, string) {
	e.t.Helper()
	resp, err := c.PostForm(e.url+path, form)
	e.ok(err)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

var uiCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// uiLogin logs c in with token and answers the page's CSRF token.
func (e *env) uiLogin(c *http.Client, token string) string {
	e.t.Helper()
	if st, loc := e.uiPost(c, "/ui/login", url.Values{"token": {token}}); st != http.StatusSeeOther || loc != "/ui/" {
		e.t.Fatalf("login = %d to %q, want 303 to /ui/", st, loc)
	}
	st, _, page := e.uiGet(c, "/ui/")
	m := uiCSRF.FindStringSubmatch(page)
	if st != http.StatusOK || m == nil {
		e.t.Fatalf("overview after login = %d without a CSRF token", st)
	}
	return m[1]
}

// TestDashboardSessionsStored: on SQLite and PostgreSQL, a dashboard
// session outlives a server restart (the same cookie opens the pages with
// the same CSRF token); logging out deletes it; revoking the token ends
// its sessions at once, not the others'. (What the store holds is sealed:
// TestStoredSessionSealed in server/web.)
func TestDashboardSessionsStored(t *testing.T) {
	for _, eng := range storetest.Engines {
		t.Run(eng, func(t *testing.T) {
			e := startEnv(t, envOpt{engine: eng})
			ctx := context.Background()
			op, err := e.admin.CreateToken(ctx, api.TokenRequest{Name: "ops", Role: api.RoleOperator})
			e.ok(err)
			b := e.uiBrowser()
			csrf := e.uiLogin(b, op.Secret)
			other := e.uiBrowser()
			e.uiLogin(other, e.admin.Token)

			e.restart(0)
			st, loc, page := e.uiGet(b, "/ui/hosts")
			if st != http.StatusOK || !strings.Contains(page, `data-role="operator"`) {
				t.Fatalf("after a restart: GET /ui/hosts = %d to %q, want the page for the operator", st, loc)
			}
			if !strings.Contains(page, `value="`+csrf+`"`) {
				t.Errorf("after a restart the session's CSRF token changed")
			}

			// Logging out deletes the session: the old cookie opens nothing.
			u, _ := url.Parse(e.url + "/ui/")
			old := b.Jar.Cookies(u)
			if st, _ := e.uiPost(b, "/ui/logout", url.Values{"csrf": {csrf}}); st != http.StatusSeeOther {
				t.Fatalf("logout = %d, want 303", st)
			}
			replay := e.uiBrowser()
			replay.Jar.SetCookies(u, old)
			if st, loc, _ := e.uiGet(replay, "/ui/"); st != http.StatusSeeOther || loc != "/ui/login?expired=1" {
				t.Errorf("the logged-out cookie: GET /ui/ = %d to %q, want 303 to /ui/login?expired=1", st, loc)
			}

			// Revoking the token ends its session; the other one lives.
			b = e.uiBrowser()
			e.uiLogin(b, op.Secret)
			e.ok(e.admin.RevokeToken(ctx, op.ID))
			if st, loc, _ := e.uiGet(b, "/ui/"); st != http.StatusSeeOther || loc != "/ui/login?expired=1" {
				t.Errorf("after revoking its token: GET /ui/ = %d to %q, want 303 to /ui/login?expired=1", st, loc)
			}
			if st, _, _ := e.uiGet(other, "/ui/"); st != http.StatusOK {
				t.Errorf("another token's session after the revocation: %d, want 200", st)
			}
		})
	}
}
