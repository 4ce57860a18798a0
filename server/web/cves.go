package web

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// The CVE pages: the fleet's open CVEs from the live plan, and one CVE's
// hosts with their fix path and deadline (GET /v1/admin/plan/cves).

// cvePage is how many rows a CVE page shows.
const cvePage = 50

var severities = []string{"critical", "high", "medium", "low", "none", "unknown"}

// offsetParam reads ?offset=, refusing what is not a whole number.
func offsetParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("offset")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, &pageError{status: http.StatusBadRequest, msg: "offset " + strconv.Quote(s) + ": want a whole number, 0 or more"}
	}
	return n, nil
}

// pager is the previous/next links of a paged table.
type pager struct {
	From, To, Total, Prev, Next int
	HasPrev, HasNext            bool
}

func newPager(offset, limit, rows, total int) pager {
	return pager{
		From: min(offset+1, total), To: offset + rows, Total: total,
		Prev: max(offset-limit, 0), HasPrev: offset > 0,
		Next: offset + limit, HasNext: offset+rows < total,
	}
}

func (h *Handler) cves(w http.ResponseWriter, r *http.Request, c *call) error {
	v := r.URL.Query()
	q := api.CVEQuery{Query: strings.TrimSpace(v.Get("q")), Severity: v.Get("severity"), Fix: v.Get("fix"), Limit: cvePage}
	if q.Severity != "" && !slices.Contains(severities, q.Severity) {
		return &pageError{status: http.StatusBadRequest, msg: "severity " + strconv.Quote(q.Severity) + ": want one of " + strings.Join(severities, ", ")}
	}
	if q.Fix != "" && !slices.Contains(api.FixPaths, q.Fix) {
		return &pageError{status: http.StatusBadRequest, msg: "fix " + strconv.Quote(q.Fix) + ": want one of " + strings.Join(api.FixPaths, ", ")}
	}
	var err error
	if q.Offset, err = offsetParam(r); err != nil {
		return err
	}
	page, err := c.api.PlanCVEs(r.Context(), q)
	if err != nil {
		return err
	}
	h.render(w, http.StatusOK, "cves", c, "CVEs", "", map[string]any{
		"Page": page, "Q": q.Query, "Severity": q.Severity, "Fix": q.Fix, "Severities": severities, "Fixes": api.FixPaths,
		"URL": r.URL, "Pager": newPager(q.Offset, page.Limit, len(page.CVEs), page.Total), "Now": h.cfg.Now(),
	})
	return nil
}

func (h *Handler) cve(w http.ResponseWriter, r *http.Request, c *call) error {
	offset, err := offsetParam(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	d, err := c.api.PlanCVE(r.Context(), id, offset, cvePage)
	if err != nil {
		return err
	}
	h.render(w, http.StatusOK, "cve", c, d.CVE, "", map[string]any{
		"CVE": d, "URL": r.URL, "Pager": newPager(offset, d.Limit, len(d.Page), d.Hosts), "Fixes": api.FixPaths, "Now": h.cfg.Now(),
	})
	return nil
}

// fixLabel is how a page names a fix path.
func fixLabel(path string) string {
	switch path {
	case api.FixLivePatch:
		return "live patch available"
	case api.FixPatched:
		return "live patched, kernel update due"
	case api.FixReboot:
		return "reboot into the fixed kernel"
	case api.FixUpdate:
		return "install the fixed kernel, reboot"
	case api.FixNone:
		return "no fix yet"
	}
	return path
}

// until says how long until t (or how long past it), in words.
func until(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now)
	if d < 0 {
		return roundDur(-d) + " overdue"
	}
	return "in " + roundDur(d)
}

// hostCVE is one open CVE of a host page.
type hostCVE struct {
	CVE, Severity, State, Fix, Remedy string
	Deadline                          *time.Time
}

// maxHostCVEs bounds the CVE rows of a host page.
const maxHostCVEs = 50

// hostCVEs lists a host plan's open CVEs, most severe first (the plan's
// order), with the fix path and the nearest deadline of each.
func hostCVEs(p *policy.HostPlan) (out struct {
	Rows []hostCVE
	More int
}) {
	if p == nil {
		return out
	}
	deadlines := map[string]time.Time{}
	for _, rr := range p.Compliance {
		for _, it := range rr.Items {
			if d, ok := deadlines[it.CVE]; !it.Deadline.IsZero() && (!ok || it.Deadline.Before(d)) {
				deadlines[it.CVE] = it.Deadline
			}
		}
	}
	for i := range p.Exposure {
		f := &p.Exposure[i]
		if !f.State.Exposed() {
			continue
		}
		if len(out.Rows) == maxHostCVEs {
			out.More++
			continue
		}
		row := hostCVE{CVE: f.CVE, Severity: f.Severity.Level.String(), State: string(f.State)}
		switch {
		case f.State == vuln.FixedLivePatch:
			row.Fix, row.Remedy = api.FixPatched, f.LivePatch
		case f.AvailablePatch != "":
			row.Fix, row.Remedy = api.FixLivePatch, f.AvailablePatch
		case f.State == vuln.FixedInstalled:
			row.Fix, row.Remedy = api.FixReboot, f.Kernel
		case f.State == vuln.UpdateNeeded:
			row.Fix, row.Remedy = api.FixUpdate, f.FixedIn
		default:
			row.Fix = api.FixNone
		}
		if d, ok := deadlines[f.CVE]; ok {
			row.Deadline = &d
		}
		out.Rows = append(out.Rows, row)
	}
	return out
}

// overviewExposure adds the overview's exposure part to data: the most
// severe open CVEs ("CVEs") and the plots of the exposure snapshots of
// the last exposureDays.
func (h *Handler) overviewExposure(ctx context.Context, c *call, data map[string]any) error {
	top, err := c.api.PlanCVEs(ctx, api.CVEQuery{Limit: 5})
	if err != nil {
		return err
	}
	data["CVEs"] = top
	h30 := h.cfg.Now().Add(-exposureDays * 24 * time.Hour)
	hist, err := c.api.ExposureHistory(ctx, h30, 0)
	if err != nil {
		return err
	}
	data["Exposure"] = hist
	data["ExposureDays"] = exposureDays
	data["SeverityPlot"] = plotSVG("plot-severity", "Open (host, CVE) exposures by severity", hist.Points, severitySeries)
	data["HostPlot"] = plotSVG("plot-hosts", "Hosts exposed and past a deadline", hist.Points, hostSeries)
	return nil
}

// exposureDays is the history the overview's plots draw.
const exposureDays = 30
