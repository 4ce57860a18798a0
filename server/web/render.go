package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
)

// htmxConfig turns off what htmx would need 'unsafe-eval' or inline
// styles for, keeps its requests on this server, keeps no page copies in
// localStorage, and swaps error answers too (into #flash, see fail).
const htmxConfig = `{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"selfRequestsOnly":true,"historyCacheSize":0,` +
	`"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"[45]..","swap":true,"error":true}]}`

// view is what every page template gets.
type view struct {
	Title      string
	Flash      string
	Who        *api.Principal
	CSRF       string
	HXHeaders  string
	CanOperate bool
	HTMXConfig string
	Data       any
}

var funcs = template.FuncMap{
	"ago":      ago,
	"when":     when,
	"labels":   labelList,
	"short":    func(s string) string { return shorten(s, 12) },
	"progress": progressSVG,
	"pct":      func(n, of int) string { return pct(n, of) },
	"query":    withQuery,
	"add":      func(a, b int) int { return a + b },
	"fixlabel": fixLabel,
	"feedage":  feedAge,
	"hostcves": hostCVEs,
	"until":    until,
	"json": func(raw json.RawMessage) string {
		var b bytes.Buffer
		if json.Indent(&b, raw, "", "  ") != nil {
			return string(raw)
		}
		return b.String()
	},
}

// parsePages parses each page template with the base layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		page := strings.TrimSuffix(path.Base(n), ".html")
		if page == "base" {
			continue
		}
		t, err := template.New(page).Funcs(funcs).ParseFS(files, "templates/base.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		out[page] = t
	}
	return out, nil
}

// render writes page (a full page) with data.
func (h *Handler) render(w http.ResponseWriter, status int, page string, c *call, title, flash string, data any) {
	h.renderTemplate(w, status, page, "base", c, title, flash, data)
}

// renderTemplate writes the template name of page's set: "base" for the
// whole page, or a fragment the page defines.
func (h *Handler) renderTemplate(w http.ResponseWriter, status int, page, name string, c *call, title, flash string, data any) {
	v := view{Title: title, Flash: flash, HTMXConfig: htmxConfig, Data: data}
	if c != nil && c.s != nil {
		v.Who, v.CSRF, v.CanOperate = &c.s.who, c.s.csrf, c.s.canOperate()
		if v.Flash == "" && name == "base" {
			v.Flash = h.sess.takeFlash(c.s)
		}
		hx, _ := json.Marshal(map[string]string{"X-CSRF-Token": c.s.csrf})
		v.HXHeaders = string(hx)
	}
	var b bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&b, name, v); err != nil {
		h.cfg.Log.Warn("dashboard template failed", "page", page, "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + roundDur(-d)
	case d < 5*time.Second:
		return "just now"
	}
	return roundDur(d) + " ago"
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

func when(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func labelList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func pct(n, of int) string {
	if of == 0 {
		return "0%"
	}
	return strconv.Itoa(n*100/of) + "%"
}

// withQuery returns u with key set to value (removed when value is "").
func withQuery(u *url.URL, key string, value any) string {
	q := u.Query()
	s := fmt.Sprint(value)
	if s == "" || s == "0" {
		q.Del(key)
	} else {
		q.Set(key, s)
	}
	out := url.URL{Path: u.Path, RawQuery: q.Encode()}
	return out.String()
}

// segment is one part of a progress bar.
type segment struct {
	Class string
	Label string
	N     int
}

// progressSVG draws a rollout's host counts as one stacked bar, inline
// SVG with classes the stylesheet colours (no inline style: the CSP
// forbids it).
func progressSVG(c api.RolloutCounts) template.HTML {
	applied := c.Applied - c.Healthy
	released := c.Released - c.Applied - c.Failed - c.Reverted
	segs := []segment{
		{"seg-healthy", "healthy", c.Healthy},
		{"seg-applied", "applied, not yet healthy", max(applied, 0)},
		{"seg-released", "released, not yet applied", max(released, 0)},
		{"seg-failed", "failed", c.Failed},
		{"seg-reverted", "reverted", c.Reverted},
	}
	total := max(c.Target, 1)
	var b strings.Builder
	b.WriteString(`<svg class="progress" viewBox="0 0 1000 20" preserveAspectRatio="none" role="img" aria-label="rollout progress">`)
	b.WriteString(`<rect class="seg-pending" x="0" y="0" width="1000" height="20"><title>pending</title></rect>`)
	x := 0.0
	for _, s := range segs {
		if s.N <= 0 {
			continue
		}
		wd := float64(s.N) * 1000 / float64(total)
		fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="0" width="%.1f" height="20"><title>%d %s</title></rect>`, s.Class, x, wd, s.N, s.Label)
		x += wd
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
