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
	SchemaVersion int       `json:"schema_version"`
	GeneratedAt   time.Time `json:"generated_at"`
	// PolicyVersion is the version of the server's policy the plan used,
	// when the plan is stent-server's live plan (0: not known, or the
	// built-in default).
	PolicyVersion int             `json:"policy_version,omitempty"`
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
	ser := newSeries(fp.GeneratedAt, days)
	for i := range fp.Hosts {
		r.Hosts = append(r.Hosts, hostReport(&fp.Hosts[i], nil))
		ser.add(&fp.Hosts[i])
	}
	r.Series = ser.points()
	return r
}

// ReportBuilder makes the report of a plan read a host at a time, keeping
// each host's section and not its plan (a host's plan is hundreds of
// times larger): the report of a fleet of any size in bounded memory. Its
// report is BuildReport's of the FleetPlan with the same hosts sorted by
// hostname (stable) and its Fleet summed by Summarize.
type ReportBuilder struct {
	r      *Report
	policy *Policy
	ser    *seriesAcc
	// evidence is the lines of each list of rule items seen: the hosts
	// of a situation share their lists (the server's plans do).
	evidence map[ruleItems][]string
}

// ruleItems identifies a list of rule items by its first element and
// length.
type ruleItems struct {
	first *Item
	n     int
}

// NewReportBuilder starts the report of a plan made under p at
// generatedAt (the oldest host plan's time), with days of history.
func NewReportBuilder(p *Policy, feeds []vuln.FeedInfo, generatedAt time.Time, days int) *ReportBuilder {
	return &ReportBuilder{
		r:        &Report{SchemaVersion: ReportSchemaVersion, GeneratedAt: generatedAt, Rules: p.Rules, Feeds: feeds},
		policy:   p,
		ser:      newSeries(generatedAt, days),
		evidence: map[ruleItems][]string{},
	}
}

// Add adds a host; h is not kept.
func (b *ReportBuilder) Add(h *HostPlan) {
	b.r.Hosts = append(b.r.Hosts, hostReport(h, b.evidence))
	b.ser.add(h)
}

// Hosts is how many hosts were added.
func (b *ReportBuilder) Hosts() int { return len(b.r.Hosts) }

// Report returns the report of the hosts added.
func (b *ReportBuilder) Report() *Report {
	r := b.r
	sort.SliceStable(r.Hosts, func(i, j int) bool { return r.Hosts[i].Hostname < r.Hosts[j].Hostname })
	r.Fleet = nil
	for _, rule := range b.policy.Rules {
		fr := FleetRule{Rule: rule.ID, Reference: rule.Reference, Hosts: map[string]int{Compliant: 0, Excepted: 0, AtRisk: 0, Breached: 0}}
		for i := range r.Hosts {
			for _, rr := range r.Hosts[i].Rules {
				if rr.Rule == rule.ID {
					fr.Hosts[rr.Status]++
					if rr.Status == Breached {
						fr.Breached = append(fr.Breached, r.Hosts[i].Hostname)
					}
				}
			}
		}
		r.Fleet = append(r.Fleet, fr)
	}
	r.Series = b.ser.points()
	return r
}

// hostReport is one host's section of the report. memo, when not nil,
// keeps the evidence lines of each list of rule items: they depend on the
// list only, and the lines of a shared list are shared (not to be
// modified).
func hostReport(h *HostPlan, memo map[ruleItems][]string) HostReport {
	hr := HostReport{Hostname: h.Hostname, Distro: h.Distro, Kernel: h.Kernel, Status: Compliant, Evidence: h.Evidence}
	for _, rr := range h.Compliance {
		rep := RuleReport{Rule: rr.Rule, Status: rr.Status, DaysExposed: rr.DaysExposed, Deadline: rr.Deadline, Counts: rr.Counts}
		if statusRank[rr.Status] > statusRank[hr.Status] {
			hr.Status = rr.Status
		}
		if len(rr.Items) > 0 && memo != nil {
			k := ruleItems{&rr.Items[0], len(rr.Items)}
			ev, ok := memo[k]
			if !ok {
				ev = itemEvidence(rr.Items)
				memo[k] = ev
			}
			rep.Evidence = ev
		} else {
			rep.Evidence = itemEvidence(rr.Items)
		}
		if len(rep.Evidence) == 0 {
			rep.Evidence = []string{fmt.Sprintf("no CVE under this rule lacks its fix on %s (%s)", h.Kernel.Release, h.Kernel.PackageVersion)}
		}
		hr.Rules = append(hr.Rules, rep)
	}
	for _, a := range h.Actions {
		hr.Actions = append(hr.Actions, a.Summary)
	}
	return hr
}

// itemEvidence is the evidence lines of a rule's items: the worst first,
// at most maxEvidence and how many more.
func itemEvidence(list []Item) []string {
	items := append([]Item(nil), list...)
	sort.SliceStable(items, func(a, b int) bool {
		if sa, sb := statusRank[items[a].Status], statusRank[items[b].Status]; sa != sb {
			return sa > sb
		}
		return items[a].DaysExposed > items[b].DaysExposed
	})
	var ev []string
	for j, it := range items {
		if j == maxEvidence {
			ev = append(ev, fmt.Sprintf("... and %d more", len(items)-maxEvidence))
			break
		}
		ev = append(ev, itemLine(it))
	}
	return ev
}

func itemLine(it Item) string {
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

// seriesAcc counts, for each of the last days before end, the (host,
// CVE) pairs exposed at the end of the day: a CVE is exposed on a host
// from the release of its fix (or its publication) until the host booted
// a kernel with the fix or applied a live patch for it. Hosts are added
// one at a time.
type seriesAcc struct {
	days       int
	start, end time.Time
	// Per-day deltas per level: +1 on the day an exposure opens, -1
	// after the day it closes.
	delta []map[vuln.Level]int
}

func newSeries(end time.Time, days int) *seriesAcc {
	a := &seriesAcc{days: days, end: end}
	if days <= 0 {
		return a
	}
	a.start = time.Date(end.Year(), end.Month(), end.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -days+1)
	a.delta = make([]map[vuln.Level]int, days+1)
	for i := range a.delta {
		a.delta[i] = map[vuln.Level]int{}
	}
	return a
}

func (a *seriesAcc) index(t time.Time) int {
	d := int(t.Sub(a.start).Hours() / 24)
	if t.Before(a.start) {
		return 0
	}
	return d
}

func (a *seriesAcc) span(from, to time.Time, level vuln.Level, n int) {
	if !to.After(from) || to.Before(a.start) || from.After(a.end) {
		return
	}
	i, j := a.index(from), a.index(to)
	if i > a.days {
		return
	}
	a.delta[i][level] += n
	if j+1 <= a.days {
		a.delta[j+1][level] -= n
	}
}

func (a *seriesAcc) add(h *HostPlan) {
	if a.days <= 0 {
		return
	}
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
		to := a.end
		if f.State == vuln.FixedLivePatch {
			if t, ok := patched[f.CVE]; ok {
				to = t
			}
		}
		a.span(from, to, f.Severity.Level, 1)
	}
	for _, r := range h.Resolved {
		a.span(r.FixReleased, h.Kernel.BootTime, r.Level, r.CVEs)
	}
}

func (a *seriesAcc) points() []Point {
	if a.days <= 0 {
		return nil
	}
	out := make([]Point, a.days)
	run := map[vuln.Level]int{}
	for d := 0; d < a.days; d++ {
		for l, n := range a.delta[d] {
			run[l] += n
		}
		p := Point{Date: a.start.AddDate(0, 0, d).Format("2006-01-02"), Counts: map[string]int{}}
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
