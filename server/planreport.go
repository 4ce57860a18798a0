package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
)

// handlePlanReport serves the compliance report of the selected hosts of
// the live plan (stent fleet report, the dashboard's printable report):
// policy's report built here from the plans in memory, a host at a time
// (policy.ReportBuilder), so that what crosses the wire is each host's
// section, not its plan.
func (s *Server) handlePlanReport(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sel, err := api.ParseLabels(q["label"])
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	days := 90
	if v := q.Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > api.MaxReportDays {
			return errorf(http.StatusBadRequest, "bad_request", "days %q: want a number of days from 0 (no history) to %d", v, api.MaxReportDays)
		}
		days = n
	}
	pq := api.PlanQuery{Selector: sel, Host: q.Get("host")}
	known, byID, _ := s.selectHosts(pq)
	db, _ := s.fk.set.DB()

	// The plans, read under the lock; they are not changed once made, so
	// the report is built after it.
	lp := s.lp
	lp.mu.RLock()
	out := &api.PlanReport{FeedGeneration: lp.gen, PolicyVersion: lp.polVersion, Error: lp.err, Unplanned: []api.PlanHost{}}
	pol := lp.pol
	ids, err := lp.selectIDs(pq, known, byID)
	if err != nil {
		lp.mu.RUnlock()
		return err
	}
	plans := make([]*policy.HostPlan, 0, len(ids))
	var generated time.Time
	for _, id := range ids {
		h := lp.hosts[id]
		if h.plan == nil {
			ph := api.PlanHost{HostID: id, Labels: known[id].labels, Error: h.err}
			if g := lp.groups[h.group]; g != nil {
				ph.Group = g.id
			}
			if !h.at.IsZero() {
				ph.EvaluatedAt = h.at.UTC()
			}
			if ph.Error == "" {
				ph.Error = "not planned yet"
				if lp.err != "" {
					ph.Error = lp.err
				}
			}
			out.Unplanned = append(out.Unplanned, ph)
			continue
		}
		plans = append(plans, h.plan)
		if generated.IsZero() || h.now.Before(generated) {
			generated = h.now
		}
	}
	lp.mu.RUnlock()
	if out.Error != "" {
		return writeJSON(w, http.StatusOK, out)
	}
	feeds := db.Feeds
	b := policy.NewReportBuilder(pol, feeds, generated, days)
	for _, p := range plans {
		b.Add(p)
	}
	out.Report = b.Report()
	out.Report.PolicyVersion = out.PolicyVersion
	return writePlanReport(w, out)
}

// writePlanReport writes rep as writeJSON would, a host's section at a
// time: the report of 10,000 hosts is tens of MB of JSON, not to be
// encoded whole in memory first.
func writePlanReport(w http.ResponseWriter, rep *api.PlanReport) error {
	hosts := rep.Report.Hosts
	if hosts == nil {
		return writeJSON(w, http.StatusOK, rep) // "hosts": null, as the report says it
	}
	rep.Report.Hosts = []policy.HostReport{}
	head, err := json.Marshal(rep)
	rep.Report.Hosts = hosts
	if err != nil {
		return err
	}
	// The report's "hosts" is the only field of PlanReport so named.
	return streamJSON(w, head, "hosts", hosts)
}
