package policy

import (
	"fmt"
	"html/template"
	"io"
	"strings"
)

// WriteHTML writes the report as one self-contained page: inline style,
// an inline SVG chart, no scripts and no external assets.
func (r *Report) WriteHTML(w io.Writer) error {
	return reportPage.Execute(w, struct {
		*Report
		Chart template.HTML
	}{r, template.HTML(r.chartSVG())})
}

var levelColors = map[string]string{
	"critical": "#7f1d1d", "high": "#dc2626", "medium": "#f59e0b", "low": "#3b82f6", "none": "#9ca3af", "unknown": "#6b7280",
}

// chartSVG draws the exposure series as stacked areas.
func (r *Report) chartSVG() string {
	const W, H, left, bottom, top, right = 960, 300, 60, 40, 20, 150
	pts := r.Series
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title" id="exposure-chart">`, W, H, W, H)
	b.WriteString(`<title id="chart-title">Open exposures by severity per day</title>`)
	if len(pts) == 0 {
		b.WriteString(`<text x="20" y="40">no history</text></svg>`)
		return b.String()
	}
	maxTotal := 0
	for _, p := range pts {
		t := 0
		for _, n := range p.Counts {
			t += n
		}
		if t > maxTotal {
			maxTotal = t
		}
	}
	if maxTotal == 0 {
		maxTotal = 1
	}
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	x := func(i int) float64 {
		if len(pts) == 1 {
			return float64(left)
		}
		return float64(left) + pw*float64(i)/float64(len(pts)-1)
	}
	y := func(v int) float64 { return float64(top) + ph - ph*float64(v)/float64(maxTotal) }
	// Axes and grid.
	for k := 0; k <= 4; k++ {
		v := maxTotal * k / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e7eb"/>`, left, W-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#374151">%d</text>`, left-6, y(v)+4, v)
	}
	for _, i := range []int{0, len(pts) / 2, len(pts) - 1} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#374151">%s</text>`, x(i), H-bottom+18, pts[i].Date)
	}
	// Stacked areas, bottom (critical) to top.
	base := make([]int, len(pts))
	for _, l := range levelsShown {
		name := l.String()
		topv := make([]int, len(pts))
		any := false
		for i, p := range pts {
			topv[i] = base[i] + p.Counts[name]
			any = any || p.Counts[name] > 0
		}
		if any {
			var path strings.Builder
			for i := range pts {
				fmt.Fprintf(&path, "%.1f,%.1f ", x(i), y(topv[i]))
			}
			for i := len(pts) - 1; i >= 0; i-- {
				fmt.Fprintf(&path, "%.1f,%.1f ", x(i), y(base[i]))
			}
			fmt.Fprintf(&b, `<polygon class="area-%s" points="%s" fill="%s" fill-opacity="0.85"><title>%s</title></polygon>`, name, strings.TrimSpace(path.String()), levelColors[name], name)
		}
		base = topv
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#111827"/>`, left, W-right, y(0), y(0))
	// Legend with today's counts.
	last := pts[len(pts)-1]
	for k, l := range levelsShown {
		name := l.String()
		yy := top + 10 + k*22
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="14" fill="%s"/>`, W-right+16, yy, levelColors[name])
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#111827">%s: %d</text>`, W-right+36, yy+12, name, last.Counts[name])
	}
	b.WriteString(`</svg>`)
	return b.String()
}

var reportPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stent compliance report {{.GeneratedAt.Format "2006-01-02"}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
h3{font-size:1.05rem;margin:1.5rem 0 .4rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #e5e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f9fafb}.muted{color:#6b7280;font-size:.85rem}
.status{font-weight:600;padding:.1rem .45rem;border-radius:.3rem;white-space:nowrap}
.compliant{background:#dcfce7;color:#166534}.at-risk{background:#fef3c7;color:#92400e}.breached{background:#fee2e2;color:#991b1b}.excepted{background:#e0e7ff;color:#3730a3}
ul{margin:.2rem 0 .2rem 1.2rem;padding:0}li{margin:.1rem 0}
@media print{body{margin:0;max-width:none;padding:0;font-size:10pt}a{color:inherit;text-decoration:none}
h2{break-after:avoid}section,tr,svg{break-inside:avoid}thead{display:table-header-group}
.status{border:1px solid currentColor}@page{margin:1.5cm}}
</style>
</head>
<body>
<h1>Kernel patching compliance</h1>
<p class="muted">Generated {{.GeneratedAt.Format "2006-01-02 15:04 MST"}} by stent report for {{len .Hosts}} host(s){{if .PolicyVersion}} under policy version {{.PolicyVersion}}{{end}}.
Feeds: {{range $i, $f := .Feeds}}{{if $i}}, {{end}}{{$f.Kind}} ({{$f.Records}} records{{if $f.Skipped}}, {{$f.Skipped}} skipped as unreadable{{end}}{{if $f.Newest}}, newest {{$f.Newest}}{{end}}){{end}}.</p>

<h2>Fleet</h2>
<table id="fleet">
<tr><th>Rule</th><th>Compliant</th><th>At risk</th><th>Breached</th><th>Excepted</th><th>Reference</th></tr>
{{range .Fleet}}<tr><td>{{.Rule}}</td><td>{{index .Hosts "compliant"}}</td><td>{{index .Hosts "at-risk"}}</td><td>{{index .Hosts "breached"}}</td><td>{{index .Hosts "excepted"}}</td><td class="muted">{{.Reference}}</td></tr>
{{end}}</table>

<h2>Exposure by severity</h2>
<p class="muted">Open (host, CVE) exposures at the end of each day: from the release of a fix (or the CVE's publication) until the host booted a fixed kernel or applied a live patch. Rebuilt from the current inventories: reboots before the current boot are not known, so days before it are an upper bound.</p>
{{.Chart}}

<h2>Hosts</h2>
<table id="hosts">
<tr><th>Host</th><th>Distribution</th><th>Kernel</th><th>Booted</th><th>Status</th></tr>
{{range .Hosts}}<tr><td><a href="#host-{{.Hostname}}">{{.Hostname}}</a></td><td>{{.Distro}}</td><td>{{.Kernel.Release}} ({{.Kernel.PackageVersion}})</td><td>{{.Kernel.BootTime.Format "2006-01-02 15:04 MST"}}</td><td><span class="status {{.Status}}">{{.Status}}</span></td></tr>
{{end}}</table>

{{range .Hosts}}
<section id="host-{{.Hostname}}">
<h3>{{.Hostname}} <span class="status {{.Status}}">{{.Status}}</span></h3>
<ul class="muted">{{range .Evidence}}<li>{{.}}</li>{{end}}</ul>
<table>
<tr><th>Rule</th><th>Status</th><th>Days exposed</th><th>Deadline</th><th>Evidence</th></tr>
{{range .Rules}}<tr><td>{{.Rule}}</td><td><span class="status {{.Status}}">{{.Status}}</span></td><td>{{printf "%.1f" .DaysExposed}}</td><td>{{if .Deadline}}{{.Deadline.Format "2006-01-02 15:04 MST"}}{{else}}-{{end}}</td><td><ul>{{range .Evidence}}<li>{{.}}</li>{{end}}</ul></td></tr>
{{end}}</table>
{{if .Actions}}<p><strong>Actions</strong></p><ol>{{range .Actions}}<li>{{.}}</li>{{end}}</ol>{{end}}
</section>
{{end}}
<h2>Rules</h2>
<table id="rules">
<tr><th>Rule</th><th>Kind</th><th>Within</th><th>Live patch counts</th><th>Reference</th></tr>
{{range .Rules}}<tr><td>{{.ID}}</td><td>{{.Kind}}</td><td>{{.Within}}</td><td>{{.LivePatchCounts}}</td><td class="muted">{{.Reference}}</td></tr>
{{end}}</table>
</body>
</html>
`))
