package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
)

// Plots drawn on the server as inline SVG: no script, no style attribute
// (the CSP forbids inline styles; the stylesheet colours the classes), and
// nothing loaded from anywhere.

// maxPlotPoints bounds the points a plot draws: longer series are thinned.
const maxPlotPoints = 300

// series is one line of a plot.
type series struct {
	Class, Label string
	Value        func(p *api.ExposurePoint) int
}

var (
	severitySeries = []series{
		{"line-critical", "critical", func(p *api.ExposurePoint) int { return p.Pairs["critical"] }},
		{"line-high", "high", func(p *api.ExposurePoint) int { return p.Pairs["high"] }},
		{"line-medium", "medium", func(p *api.ExposurePoint) int { return p.Pairs["medium"] }},
		{"line-low", "low", func(p *api.ExposurePoint) int { return p.Pairs["low"] }},
	}
	hostSeries = []series{
		{"line-exposed", "hosts exposed", func(p *api.ExposurePoint) int { return p.Exposed }},
		{"line-overdue", "hosts past a deadline", func(p *api.ExposurePoint) int { return p.Overdue }},
	}
)

// thin keeps at most n of ps, evenly spread, the first and last kept.
func thin(ps []api.ExposurePoint, n int) []api.ExposurePoint {
	if len(ps) <= n {
		return ps
	}
	out := make([]api.ExposurePoint, 0, n)
	for i := range n {
		out = append(out, ps[i*(len(ps)-1)/(n-1)])
	}
	return out
}

// plotSVG draws ss over ps (oldest first) as lines on a time axis, with
// the newest values in the legend.
func plotSVG(id, title string, ps []api.ExposurePoint, ss []series) template.HTML {
	const W, H, left, right, top, bottom = 720, 200, 50, 170, 10, 24
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" id="%s" viewBox="0 0 %d %d" role="img" aria-label="%s">`, id, W, H, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(title))
	if len(ps) == 0 {
		fmt.Fprintf(&b, `<text class="plot-empty" x="%d" y="%d">no snapshot yet</text></svg>`, left, H/2)
		return template.HTML(b.String())
	}
	ps = thin(ps, maxPlotPoints)
	top0, t0, t1 := 1, ps[0].At, ps[len(ps)-1].At
	for i := range ps {
		for _, s := range ss {
			top0 = max(top0, s.Value(&ps[i]))
		}
	}
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	span := t1.Sub(t0)
	x := func(t time.Time) float64 {
		if span <= 0 {
			return float64(left) + pw
		}
		return float64(left) + pw*float64(t.Sub(t0))/float64(span)
	}
	y := func(v int) float64 { return float64(top) + ph - ph*float64(v)/float64(top0) }
	for k := 0; k <= 4; k++ {
		v := top0 * k / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, left, W-right, y(v), y(v))
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%d</text>`, left-4, y(v)+4, v)
	}
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d">%s</text>`, left, H-6, t0.UTC().Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">%s</text>`, W-right, H-6, t1.UTC().Format("2006-01-02 15:04"))
	last := &ps[len(ps)-1]
	for k, s := range ss {
		var pts strings.Builder
		for i := range ps {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(ps[i].At), y(s.Value(&ps[i])))
		}
		if len(ps) == 1 { // one snapshot: a dot, not a line
			fmt.Fprintf(&b, `<circle class="%s" cx="%.1f" cy="%.1f" r="3"><title>%s</title></circle>`, s.Class, x(last.At), y(s.Value(last)), s.Label)
		} else {
			fmt.Fprintf(&b, `<polyline class="%s" points="%s"><title>%s</title></polyline>`, s.Class, strings.TrimSpace(pts.String()), s.Label)
		}
		ly := top + 12 + k*20
		fmt.Fprintf(&b, `<rect class="%s key" x="%d" y="%d" width="12" height="4"/>`, s.Class, W-right+12, ly-4)
		fmt.Fprintf(&b, `<text class="legend" x="%d" y="%d">%s: %d</text>`, W-right+30, ly+1, s.Label, s.Value(last))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
