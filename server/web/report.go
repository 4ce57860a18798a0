package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/stent-dev/stent/api"
)

// The printable report: the compliance report of stent fleet report
// (api.Client.FleetReport: made by the server from the live plan, then
// Report.WriteHTML), served as it is. It is one self-contained page
// whose only style is its own inline <style> (with print rules); the page
// gets a Content-Security-Policy that allows that style by its hash and
// nothing else: no script, no other style, nothing from outside.

// maxReportDays bounds ?days=, the history the report's chart draws.
const maxReportDays = 3650

// maxReportHosts bounds the hosts of a printable report (each host is a
// section of the page, and a page of thousands is neither fast nor
// printable; stent fleet report writes a report of any size). A variable
// for the tests.
var maxReportHosts = 1000

func (h *Handler) report(w http.ResponseWriter, r *http.Request, c *call) error {
	v := r.URL.Query()
	sel, err := api.ParseLabels(v["label"])
	if err != nil {
		return &pageError{status: http.StatusBadRequest, msg: "label: " + err.Error()}
	}
	days := 90
	if s := v.Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxReportDays {
			return &pageError{status: http.StatusBadRequest, msg: "days " + strconv.Quote(s) + ": want a number of days from 1 to " + strconv.Itoa(maxReportDays)}
		}
		days = n
	}
	q := api.PlanQuery{Selector: sel, Host: v.Get("host")}
	// One host's plan first: it says how many hosts the report would
	// cover, and a page of thousands of hosts is neither fast nor printable.
	probe, err := c.api.Plan(r.Context(), api.PlanQuery{Selector: sel, Host: q.Host, Limit: 1})
	if err != nil {
		return err
	}
	if probe.Hosts > maxReportHosts {
		return &pageError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf(
			"the report would cover %d hosts; this page renders at most %d: narrow it with ?label=KEY=VALUE or ?host=ID, or write the whole report with stent fleet report --format html -o report.html", probe.Hosts, maxReportHosts)}
	}
	wr, err := c.api.FleetReport(r.Context(), q, days)
	var se *api.StatusError
	switch {
	case errors.As(err, &se):
		return err
	case err != nil:
		return &pageError{status: http.StatusServiceUnavailable, msg: "no report: " + err.Error()}
	}
	rep := wr.Report
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		return err
	}
	w.Header().Set("Content-Security-Policy", reportCSP(b.Bytes()))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
	return nil
}

// reportCSP allows page's inline <style> elements by their hashes, and
// nothing else.
func reportCSP(page []byte) string {
	styles := ""
	rest := page
	for {
		_, after, ok := bytes.Cut(rest, []byte("<style>"))
		if !ok {
			break
		}
		css, tail, ok := bytes.Cut(after, []byte("</style>"))
		if !ok {
			break
		}
		sum := sha256.Sum256(css)
		styles += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		rest = tail
	}
	if styles == "" {
		styles = " 'none'"
	}
	return "default-src 'none'; style-src" + styles + "; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
}
