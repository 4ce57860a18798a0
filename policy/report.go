package policy

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/vuln"
)

// ReportSchemaVersion is the version of the report JSON.
const ReportSchemaVersion = 1

// Report is the compliance view of a plan: per host and fleet-wide, per
// rule, the status, days exposed, deadline and evidence, and the exposure
// of the fleet by severity over time.
type Report struct {
	SchemaVersion int             `json:"schema_version"`
	GeneratedAt   time.Time       `json:"generated_at"`
	Rules         []Rule          `json:"rules"`
	Feeds         []vuln.FeedInfo `json:"feeds"`
	Fleet         []FleetRule     `json:"fleet"`
	Hosts         []HostReport    `json:"hosts"`
	Series        []Point         `json:"exposure_by_severity"`
}

// HostReport is one host's standing.
type HostReport struct {
	Hostname string       `json:"hostname"`
	Distro   string       `json:"distro"`
	Kernel   KernelInfo   `json:"kernel"`
	Status   string       `json:"status"` // the worst of its rules
	Evidence []string     `json:"evidence"`
	Rules    []RuleReport `json:"rules"`
	Actions  []string     `json:"actions"`
}

// RuleReport is a host's standing under one rule.
type RuleReport struct {
	Rule        string         `json:"rule"`
	Status      string         `json:"status"`
	DaysExposed float64        `json:"days_exposed"`
	Deadline    *time.Time     `json:"deadline,omitempty"`
	Counts      map[string]int `json:"counts"`
	Evidence    []string       `json:"evidence"`
}

// Point is the number of open (host, CVE) exposures per severity at the
// end of one day.
type Point struct {
	Date   string         `json:"date"`
	Counts map[string]int `json:"counts"`
}

// maxEvidence bounds the CVE lines per host and rule.
const maxEvidence = 12

// BuildReport turns a plan into a report with days of history.
func BuildReport(fp *FleetPlan, days int) *Report {
	r := &Report{SchemaVersion: ReportSchemaVersion, GeneratedAt: fp.GeneratedAt, Rules: fp.Policy.Rules, Feeds: fp.Feeds, Fleet: fp.Fleet}
	for i := range fp.Hosts {
		h := &fp.Hosts[i]
		hr := HostReport{Hostname: h.Hostname, Distro: h.Distro, Kernel: h.Kernel, Status: Compliant, Evidence: h.Evidence}
		for _, rr := range h.Compliance {
			rep := RuleReport{Rule: rr.Rule, Status: rr.Status, DaysExposed: rr.DaysExposed, Deadline: rr.Deadline, Counts: rr.Counts}
			if statusRank[rr.Status] > statusRank[hr.Status] {
				hr.Status = rr.Status
			}
			items := append([]Item(nil), rr.Items...)
			sort.SliceStable(items, func(a, b int) bool {
				if sa, sb := statusRank[items[a].Status], statusRank[items[b].Status]; sa != sb {
					return sa > sb
				}
				return items[a].DaysExposed > items[b].DaysExposed
			})
			for j, it := range items {
				if j == maxEvidence {
					rep.Evidence = append(rep.Evidence, fmt.Sprintf("... and %d more", len(items)-maxEvidence))
					break
				}
				rep.Evidence = append(rep.Evidence, itemLine(it, h))
			}
			if len(rep.Evidence) == 0 {
				rep.Evidence = []string{fmt.Sprintf("no CVE under this rule lacks its fix on %s (%s)", h.Kernel.Release, h.Kernel.PackageVersion)}
			}
			hr.Rules = append(hr.Rules, rep)
		}
		for _, a := range h.Actions {
			hr.Actions = append(hr.Actions, a.Summary)
		}
		r.Hosts = append(r.Hosts, hr)
	}
	r.Series = series(fp, days)
	return r
}

func itemLine(it Item, h *HostPlan) string {
	s := fmt.Sprintf("%s: %s, %s", it.CVE, it.State, it.Status)
	if !it.Since.IsZero() {
		s += ", remedy released " + it.Since.Format("2006-01-02")
	}
	if !it.Deadline.IsZero() {
		s += ", deadline " + it.Deadline.Format("2006-01-02 15:04Z07:00")
	}
	if it.DaysExposed > 0 {
		s += fmt.Sprintf(", %.1f days exposed", it.DaysExposed)
	}
	if it.Note != "" {
		s += " (" + it.Note + ")"
	}
	return s
}

// series counts, for each of the last days, the (host, CVE) pairs exposed
// at the end of the day: a CVE is exposed on a host from the release of
// its fix (or its publication) until the host booted a kernel with the fix
// or applied a live patch for it.
func series(fp *FleetPlan, days int) []Point {
	if days <= 0 {
		return nil
	}
	end := fp.GeneratedAt
	start := time.Date(end.Year(), end.Month(), end.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -days+1)
	type span struct {
		from, to time.Time
		level    vuln.Level
	}
	// Per-day deltas per level: +1 on the day an exposure opens, -1 after
	// the day it closes.
	delta := make([]map[vuln.Level]int, days+1)
	for i := range delta {
		delta[i] = map[vuln.Level]int{}
	}
	index := func(t time.Time) int {
		d := int(t.Sub(start).Hours() / 24)
		if t.Before(start) {
			return 0
		}
		return d
	}
	add := func(sp span, n int) {
		if !sp.to.After(sp.from) || sp.to.Before(start) || sp.from.After(end) {
			return
		}
		a, b := index(sp.from), index(sp.to)
		if a > days {
			return
		}
		delta[a][sp.level] += n
		if b+1 <= days {
			delta[b+1][sp.level] -= n
		}
	}
	for i := range fp.Hosts {
		h := &fp.Hosts[i]
		patched := map[string]time.Time{}
		for _, lp := range h.LivePatches {
			if lp.AppliedAt != nil && lp.Enabled {
				for _, c := range lp.CVEs {
					patched[c] = *lp.AppliedAt
				}
			}
		}
		for j := range h.Exposure {
			f := &h.Exposure[j]
			var from time.Time
			switch {
			case f.FixReleased != nil:
				from = *f.FixReleased
			case f.Published != nil:
				from = *f.Published
			default:
				continue
			}
			to := end
			if f.State == vuln.FixedLivePatch {
				if t, ok := patched[f.CVE]; ok {
					to = t
				}
			}
			add(span{from, to, f.Severity.Level}, 1)
		}
		for _, r := range h.Resolved {
			add(span{r.FixReleased, h.Kernel.BootTime, r.Level}, r.CVEs)
		}
	}
	out := make([]Point, days)
	run := map[vuln.Level]int{}
	for d := 0; d < days; d++ {
		for l, n := range delta[d] {
			run[l] += n
		}
		p := Point{Date: start.AddDate(0, 0, d).Format("2006-01-02"), Counts: map[string]int{}}
		for _, l := range levelsShown {
			p.Counts[l.String()] = run[l]
		}
		out[d] = p
	}
	return out
}

// levelsShown are the severities in the chart, bottom to top.
var levelsShown = []vuln.Level{vuln.LevelCritical, vuln.LevelHigh, vuln.LevelMedium, vuln.LevelLow, vuln.LevelNone, vuln.LevelUnknown}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteCSV writes one row per host and rule, then one per rule for the
// fleet (host "*").
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"host", "rule", "status", "days_exposed", "deadline", "kernel", "package_version", "boot_time", "evidence"})
	for _, h := range r.Hosts {
		for _, rr := range h.Rules {
			dl := ""
			if rr.Deadline != nil {
				dl = rr.Deadline.Format(time.RFC3339)
			}
			ev := append(append([]string(nil), h.Evidence...), rr.Evidence...)
			_ = cw.Write([]string{h.Hostname, rr.Rule, rr.Status, fmt.Sprintf("%.1f", rr.DaysExposed), dl,
				h.Kernel.Release, h.Kernel.PackageVersion, h.Kernel.BootTime.Format(time.RFC3339), strings.Join(ev, "; ")})
		}
	}
	for _, fr := range r.Fleet {
		worst := Compliant
		for s, n := range fr.Hosts {
			if n > 0 && statusRank[s] > statusRank[worst] {
				worst = s
			}
		}
		ev := fmt.Sprintf("hosts: %d compliant, %d excepted, %d at risk, %d breached", fr.Hosts[Compliant], fr.Hosts[Excepted], fr.Hosts[AtRisk], fr.Hosts[Breached])
		if len(fr.Breached) > 0 {
			ev += "; breached: " + strings.Join(fr.Breached, ", ")
		}
		_ = cw.Write([]string{"*", fr.Rule, worst, "", "", "", "", "", ev})
	}
	cw.Flush()
	return cw.Error()
}
