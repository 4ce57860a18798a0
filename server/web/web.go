// Package web is stent-server's dashboard: HTML pages under /ui/ on the
// server's own listener and TLS, rendered on the server with html/template
// and made live with htmx (vendored in static/, embedded in the binary: a
// page loads nothing from outside the server).
//
// The pages hold no privilege of their own. A person logs in with an admin
// API token (viewer, operator or admin); the token stays on the server, in
// a session that the browser knows only by a random id in an HttpOnly,
// Secure, SameSite=Strict cookie. Every page reads and changes the fleet
// through the admin API with that token, in process, so the API's role
// checks decide what a session may do: a viewer's page hides the buttons,
// and the API refuses the change if one is sent anyway. Every request
// that changes something (log out, pause, resume, revert) must carry the
// session's CSRF token and come from the same origin.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
)

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

//go:embed static templates
var files embed.FS

// Config wires the dashboard to its server.
type Config struct {
	// API serves the admin API (stent-server's handler); the pages call it
	// in process with the session's token.
	API http.Handler
	// SessionTTL bounds a session's life (default 8h); a session also
	// ends when its token expires or is revoked.
	SessionTTL time.Duration
	// Sessions keeps the sessions across restarts; nil: in memory.
	Sessions SessionStore
	Now      func() time.Time
	Log      *slog.Logger
	// Changes returns a channel closed at the server's next change of
	// state; the event streams wait on it (nil: they refresh on a timer
	// only).
	Changes func() <-chan struct{}
}

// Handler serves the dashboard.
type Handler struct {
	cfg    Config
	mux    *http.ServeMux
	sess   *sessions
	pages  map[string]*template.Template
	static http.Handler
}

// route is one dashboard URL: its "METHOD path" pattern, whether it needs
// a session, and its handler.
type route struct {
	pattern string
	session bool
	h       func(w http.ResponseWriter, r *http.Request, c *call) error
}

// routes is the dashboard's route table (the admin API's is apiRoutes in
// package server; these are pages, not API).
func (h *Handler) routes() []route {
	return []route{
		{"GET /ui/login", false, h.loginPage},
		{"POST /ui/login", false, h.login},
		{"POST /ui/logout", true, h.logout},
		{"GET /ui/{$}", true, h.overview},
		{"GET /ui/hosts", true, h.hosts},
		{"GET /ui/hosts/{id}", true, h.host},
		{"GET /ui/rollouts", true, h.rollouts},
		{"GET /ui/rollouts/{id}", true, h.rollout},
		{"GET /ui/rollouts/{id}/progress", true, h.rolloutProgress},
		{"POST /ui/rollouts/{id}/{action}", true, h.rolloutAction},
		{"GET /ui/kernel-rollouts", true, h.kernelRollouts},
		{"GET /ui/reboots", true, h.reboots},
		{"GET /ui/audit", true, h.audit},
		{"GET /ui/cves", true, h.cves},
		{"GET /ui/cves/{id}", true, h.cve},
		{"GET /ui/report", true, h.report},
		{"GET /ui/feeds", true, h.feeds},
	}
}

// allRoutes is routes() and the other files' tables.
func (h *Handler) allRoutes() []route {
	return slices.Concat(h.routes(), h.actionRoutes(), h.eventRoutes())
}

// New returns the dashboard's handler.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil {
		return nil, errors.New("web: Config.API is nil")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), sess: newSessions(cfg.Now, cfg.Sessions)}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(files, "static")
	h.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	h.mux.Handle("GET "+Prefix+"static/", h.static)
	h.mux.Handle("GET /ui", http.RedirectHandler(Prefix, http.StatusFound))
	for _, rt := range h.allRoutes() {
		h.mux.HandleFunc(rt.pattern, h.wrap(rt))
	}
	return h, nil
}

// ServeHTTP serves a dashboard request. Cross-origin requests that change
// something are refused before anything else (http.CrossOriginProtection
// reads Sec-Fetch-Site and Origin).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		hd.Set("Cache-Control", "no-store")
	}
	crossOrigin.Handler(h.mux).ServeHTTP(w, r)
}

var crossOrigin = http.NewCrossOriginProtection()

// call is one page request's context: its session and the admin API
// client that carries the session's token.
type call struct {
	s   *session
	api *api.Client
}

func (h *Handler) wrap(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := &call{}
		if rt.session {
			s, err := h.sess.get(r)
			if err != nil && !errors.Is(err, errNoSession) && !errors.Is(err, errBadSession) {
				h.fail(w, r, c, err) // the store cannot be read: not the browser's fault
				return
			}
			if err != nil {
				h.refuse(w, r, err)
				return
			}
			if r.Method != http.MethodGet && !s.checkCSRF(r) {
				h.fail(w, r, c, &pageError{status: http.StatusForbidden, msg: "the form's CSRF token is missing or wrong: reload the page and try again"})
				return
			}
			c.s, c.api = s, h.client(s.token)
		}
		if err := rt.h(w, r, c); err != nil {
			h.fail(w, r, c, err)
		}
	}
}

// refuse answers a request without a valid session: pages go to the login
// page (saying why when there was a cookie), changes get 401.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, why error) {
	clearCookie(w)
	if r.Method != http.MethodGet {
		http.Error(w, "not logged in: "+why.Error(), http.StatusUnauthorized)
		return
	}
	to := Prefix + "login"
	if errors.Is(why, errBadSession) {
		to += "?expired=1"
	}
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Redirect", to)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// pageError is an error with the status and text to show.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

// fail shows err: an API refusal with the API's own words, a token the
// API no longer takes by ending the session.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, c *call, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var pe *pageError
	var se *api.StatusError
	switch {
	case errors.As(err, &pe):
		status, msg = pe.status, pe.msg
	case errors.As(err, &se):
		if se.Status == http.StatusUnauthorized && c.s != nil {
			if err := h.sess.drop(r.Context(), c.s); err != nil {
				h.cfg.Log.Warn("dashboard session not ended", "err", err)
			}
			h.refuse(w, r, errBadSession)
			return
		}
		status, msg = se.Status, se.Message
		if msg == "" {
			msg = http.StatusText(se.Status)
		}
	default:
		h.cfg.Log.Warn("dashboard page failed", "path", r.URL.Path, "err", err)
	}
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Retarget", "#flash")
		w.Header().Set("HX-Reswap", "innerHTML")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		template.HTMLEscape(w, []byte(msg))
		return
	}
	h.render(w, status, "error", c, "Error", "", map[string]any{"Status": status, "Text": http.StatusText(status), "Message": msg})
}

// client returns an admin API client that calls the API in process with
// token.
func (h *Handler) client(token string) *api.Client {
	return &api.Client{BaseURL: "http://stent-server", Token: token, HTTP: &http.Client{Transport: inProcess{h.cfg.API}}}
}

// inProcess is an http.RoundTripper that serves requests with a handler.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		StatusCode: rec.status, Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: r,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
