package server

import (
	gocmp "cmp"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// The fleet's open CVEs: an index of the live plan by CVE, made when it is
// asked for and the plan changed, kept until the plan changes again. Its
// memory is one entry per (CVE, kernel situation), not per (CVE, host):
// the hosts of one situation planned together share their findings, so a
// CVE points at the situation's host list. Deadlines are per host (a
// host's exceptions move them) and are read from the hosts' plans when one
// CVE's hosts are listed.

// cveIndexMinAge is how long an index is used even when the plan changed
// meanwhile: with 10,000 hosts checking in, the plan changes all the time
// and an index costs a pass over every host's plan.
const cveIndexMinAge = 2 * time.Second

// cveCache holds the newest index.
type cveCache struct {
	mu  sync.Mutex
	idx *cveIndex
}

// cveIndex is the live plan by CVE.
type cveIndex struct {
	fp      uint64 // planFingerprint of the plan it was made of
	planned int    // how many hosts had a plan then
	built   time.Time
	err     string // why there is no plan
	hosts   []cveHostRef
	list    []*cveAgg // most severe first
	byID    map[string]*cveAgg
	// exposed: hosts with at least one open CVE; overdue: hosts past a
	// deadline for one; pairs: open (host, CVE) pairs per severity level.
	exposed, overdue int
	pairs            map[string]int
}

// cveHostRef is one planned host.
type cveHostRef struct {
	id, name, group string
	plan            *policy.HostPlan
}

// cveBucket is the hosts of one situation planned together.
type cveBucket struct{ hosts []int } // indexes into cveIndex.hosts

// cveAgg is one open CVE.
type cveAgg struct {
	sum   api.CVESummary
	level vuln.Level
	score float64
	pub   *time.Time
	fix   *time.Time
	refs  []cveRef
}

// cveRef is a CVE's finding in one bucket.
type cveRef struct {
	b *cveBucket
	f *vuln.Finding
}

// fixPath says how a host gets f's fix.
func fixPath(f *vuln.Finding) (path, remedy string) {
	switch {
	case f.State == vuln.FixedLivePatch:
		return api.FixPatched, f.LivePatch
	case f.AvailablePatch != "":
		return api.FixLivePatch, f.AvailablePatch
	case f.State == vuln.FixedInstalled:
		return api.FixReboot, f.Kernel
	case f.State == vuln.UpdateNeeded:
		return api.FixUpdate, f.FixedIn
	}
	return api.FixNone, ""
}

// planFingerprint changes whenever a host's plan, the database or the
// policy does: one pass over the hosts, no plan read.
func (s *Server) planFingerprint() uint64 {
	fp, _ := s.planState()
	return fp
}

// planState is planFingerprint and how many hosts have a plan.
func (s *Server) planState() (fp uint64, planned int) {
	lp := s.lp
	lp.mu.RLock()
	defer lp.mu.RUnlock()
	h := fnv.New64a()
	var sum uint64
	for _, ph := range lp.hosts {
		sum += uint64(ph.at.UnixNano())
		if ph.plan != nil {
			planned++
		}
	}
	b := strconv.AppendUint(nil, sum, 10)
	b = strconv.AppendUint(append(b, ' '), lp.gen, 10)
	b = strconv.AppendInt(append(b, ' '), int64(lp.polVersion), 10)
	b = strconv.AppendInt(append(b, ' '), int64(len(lp.hosts)), 10)
	h.Write(append(b, lp.err...))
	return h.Sum64(), planned
}

// cveIndex returns an index of the current plan, at most cveIndexMinAge
// old when the plan changes (and as many hosts have a plan as then).
func (s *Server) cveIndex() *cveIndex {
	fp, planned := s.planState()
	s.cx.mu.Lock()
	defer s.cx.mu.Unlock()
	if idx := s.cx.idx; idx != nil && (idx.fp == fp || (time.Since(idx.built) < cveIndexMinAge && idx.planned == planned)) {
		return idx
	}
	s.cx.idx = s.buildCVEIndex(fp)
	s.cx.idx.planned = planned
	return s.cx.idx
}

// dropCVEIndex forgets the index, and with it the plans it holds.
func (s *Server) dropCVEIndex() {
	s.cx.mu.Lock()
	s.cx.idx = nil
	s.cx.mu.Unlock()
}

func (s *Server) buildCVEIndex(fp uint64) *cveIndex {
	s.mu.RLock()
	names := make(map[string]string, len(s.hosts))
	for id, h := range s.hosts {
		if h.RevokedAt.IsZero() {
			names[id] = h.Hostname
		}
	}
	s.mu.RUnlock()
	now := s.now()
	idx := &cveIndex{fp: fp, built: time.Now(), byID: map[string]*cveAgg{}, pairs: map[string]int{}}
	type planned struct {
		ref cveHostRef
		key string // situation and plan time: hosts planned together
	}
	var hosts []planned
	lp := s.lp
	lp.mu.RLock()
	idx.err = lp.err
	for id, h := range lp.hosts {
		name, ok := names[id]
		if !ok || h.plan == nil {
			continue
		}
		if name == "" {
			name = h.plan.Hostname
		}
		gid := ""
		if g := lp.groups[h.group]; g != nil {
			gid = g.id
		}
		hosts = append(hosts, planned{cveHostRef{id, name, gid, h.plan}, h.group + "@" + h.now.String()})
	}
	lp.mu.RUnlock()
	slices.SortFunc(hosts, func(a, b planned) int { return strings.Compare(a.ref.id, b.ref.id) })

	buckets := map[string]*cveBucket{}
	for i, ph := range hosts {
		idx.hosts = append(idx.hosts, ph.ref)
		p := ph.ref.plan
		b := buckets[ph.key]
		if b == nil {
			b = &cveBucket{}
			buckets[ph.key] = b
			for j := range p.Exposure {
				f := &p.Exposure[j]
				if !f.State.Exposed() {
					continue
				}
				a := idx.byID[f.CVE]
				if a == nil {
					a = &cveAgg{sum: api.CVESummary{CVE: f.CVE, Paths: map[string]int{}}, level: f.Severity.Level}
					idx.byID[f.CVE] = a
					idx.list = append(idx.list, a)
				}
				if f.Severity.Level > a.level {
					a.level = f.Severity.Level
				}
				if f.Severity.Scored && f.Severity.Score > a.score {
					a.score = f.Severity.Score
					sc := f.Severity.Score
					a.sum.Score = &sc
				}
				a.pub = earliest(a.pub, f.Published)
				a.fix = earliest(a.fix, f.FixReleased)
				a.refs = append(a.refs, cveRef{b, f})
			}
		}
		b.hosts = append(b.hosts, i)
	}
	// Each host's nearest deadline per open CVE, over its rules. Hosts
	// planned together share their rules' item lists (exceptions aside),
	// so the deadlines are worked out once per combination of lists and
	// counted for its hosts.
	type combo struct {
		hosts     int
		deadlines map[string]time.Time
	}
	combos := map[string]*combo{}
	var key []byte
	for _, ph := range idx.hosts {
		key = key[:0]
		for _, rr := range ph.plan.Compliance {
			if len(rr.Items) > 0 {
				key = fmt.Appendf(key, "%p/%d ", &rr.Items[0], len(rr.Items))
			}
		}
		cb := combos[string(key)]
		if cb == nil {
			cb = &combo{deadlines: map[string]time.Time{}}
			combos[string(key)] = cb
			for _, rr := range ph.plan.Compliance {
				for _, it := range rr.Items {
					if it.Deadline.IsZero() || idx.byID[it.CVE] == nil {
						continue
					}
					if d, ok := cb.deadlines[it.CVE]; !ok || it.Deadline.Before(d) {
						cb.deadlines[it.CVE] = it.Deadline
					}
				}
			}
		}
		cb.hosts++
	}
	for _, cb := range combos {
		late := false
		for cve, d := range cb.deadlines {
			a := idx.byID[cve]
			if a.sum.Deadline == nil || d.Before(*a.sum.Deadline) {
				dd := d
				a.sum.Deadline = &dd
			}
			if d.Before(now) {
				a.sum.Overdue += cb.hosts
				late = true
			}
		}
		if late {
			idx.overdue += cb.hosts
		}
	}
	exposed := make([]bool, len(idx.hosts))
	for _, a := range idx.list {
		a.sum.Severity = a.level.String()
		for _, r := range a.refs {
			path, _ := fixPath(r.f)
			n := len(r.b.hosts)
			a.sum.Hosts += n
			a.sum.Paths[path] += n
			idx.pairs[a.sum.Severity] += n
			for _, i := range r.b.hosts {
				exposed[i] = true
			}
		}
	}
	for _, e := range exposed {
		if e {
			idx.exposed++
		}
	}
	slices.SortFunc(idx.list, func(a, b *cveAgg) int {
		return gocmp.Or(gocmp.Compare(b.level, a.level), gocmp.Compare(b.score, a.score), gocmp.Compare(b.sum.Hosts, a.sum.Hosts), strings.Compare(a.sum.CVE, b.sum.CVE))
	})
	return idx
}

func earliest(a, b *time.Time) *time.Time {
	if b == nil || (a != nil && !b.Before(*a)) {
		return a
	}
	t := *b
	return &t
}

func (s *Server) cveRoutes() []route {
	return []route{
		{"GET " + api.PathPlanCVEs, api.RoleViewer, s.handlePlanCVEs},
		{"GET " + api.PathPlanCVE + "{id}", api.RoleViewer, s.handlePlanCVE},
	}
}

// pageParams reads ?offset= and ?limit= (default def, at most most).
func pageParams(r *http.Request, def, most int) (offset, limit int, err error) {
	q := r.URL.Query()
	limit = def
	if v := q.Get("offset"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 0 {
			return 0, 0, errorf(http.StatusBadRequest, "bad_request", "offset %q: want a whole number, 0 or more", v)
		}
		offset = n
	}
	if v := q.Get("limit"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 {
			return 0, 0, errorf(http.StatusBadRequest, "bad_request", "limit %q: want a positive number (at most %d)", v, most)
		}
		limit = min(n, most)
	}
	return offset, limit, nil
}

var levelNames = []string{"critical", "high", "medium", "low", "none", "unknown"}

// handlePlanCVEs serves a page of the fleet's open CVEs.
func (s *Server) handlePlanCVEs(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := pageParams(r, api.CVELimit, api.MaxCVELimit)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	sev, fix, text := q.Get("severity"), q.Get("fix"), strings.ToUpper(strings.TrimSpace(q.Get("q")))
	if sev != "" && !slices.Contains(levelNames, sev) {
		return errorf(http.StatusBadRequest, "bad_request", "severity %q: want one of %s", sev, strings.Join(levelNames, ", "))
	}
	if fix != "" && !slices.Contains(api.FixPaths, fix) {
		return errorf(http.StatusBadRequest, "bad_request", "fix %q: want one of %s", fix, strings.Join(api.FixPaths, ", "))
	}
	idx := s.cveIndex()
	out := &api.CVEPage{GeneratedAt: idx.built.UTC(), Error: idx.err, Open: len(idx.list), Hosts: idx.exposed, Overdue: idx.overdue, Offset: offset, Limit: limit, CVEs: []api.CVESummary{}}
	for _, a := range idx.list {
		if (sev != "" && a.sum.Severity != sev) || (fix != "" && a.sum.Paths[fix] == 0) || (text != "" && !strings.Contains(a.sum.CVE, text)) {
			continue
		}
		if out.Total >= offset && len(out.CVEs) < limit {
			out.CVEs = append(out.CVEs, a.sum)
		}
		out.Total++
	}
	return writeJSON(w, http.StatusOK, out)
}

// handlePlanCVE serves one CVE and a page of its hosts.
func (s *Server) handlePlanCVE(w http.ResponseWriter, r *http.Request) error {
	offset, limit, err := pageParams(r, api.CVELimit, api.MaxCVELimit)
	if err != nil {
		return err
	}
	id := strings.ToUpper(strings.TrimSpace(r.PathValue("id")))
	idx := s.cveIndex()
	a := idx.byID[id]
	if a == nil {
		if idx.err != "" {
			return errorf(http.StatusNotFound, "not_found", "no plan yet, so no host is known to be exposed to %s: %s", id, idx.err)
		}
		return errorf(http.StatusNotFound, "not_found", "no planned host is exposed to %s: it is fixed everywhere, not in the feeds, or not a CVE id", id)
	}
	now := s.now()
	// The CVE's deadline and worst status per rule's item list: hosts
	// planned together share the lists.
	type mark struct {
		deadline *time.Time
		status   string
	}
	marks := map[*policy.Item]mark{}
	markOf := func(items []policy.Item) mark {
		if len(items) == 0 {
			return mark{}
		}
		if m, ok := marks[&items[0]]; ok {
			return m
		}
		var m mark
		for _, it := range items {
			if it.CVE != id {
				continue
			}
			if !it.Deadline.IsZero() && (m.deadline == nil || it.Deadline.Before(*m.deadline)) {
				d := it.Deadline
				m.deadline = &d
			}
			if m.status == "" || worse(it.Status, m.status) {
				m.status = it.Status
			}
		}
		marks[&items[0]] = m
		return m
	}
	out := &api.CVEDetail{CVESummary: a.sum, GeneratedAt: idx.built.UTC(), Published: a.pub, FixReleased: a.fix, Offset: offset, Limit: limit, Page: []api.CVEHost{}}
	rows := make([]api.CVEHost, 0, a.sum.Hosts)
	for _, ref := range a.refs {
		path, remedy := fixPath(ref.f)
		for _, i := range ref.b.hosts {
			h := &idx.hosts[i]
			row := api.CVEHost{HostID: h.id, Hostname: h.name, Group: h.group, Kernel: h.plan.Kernel.Release, State: string(ref.f.State), Fix: path, Remedy: remedy}
			for _, rr := range h.plan.Compliance {
				m := markOf(rr.Items)
				if m.deadline != nil && (row.Deadline == nil || m.deadline.Before(*row.Deadline)) {
					row.Deadline = m.deadline
				}
				if m.status != "" && (row.Status == "" || worse(m.status, row.Status)) {
					row.Status = m.status
				}
			}
			row.Overdue = row.Deadline != nil && row.Deadline.Before(now)
			rows = append(rows, row)
		}
	}
	slices.SortFunc(rows, func(a, b api.CVEHost) int {
		if a.Overdue != b.Overdue {
			if a.Overdue {
				return -1
			}
			return 1
		}
		switch {
		case a.Deadline != nil && b.Deadline == nil:
			return -1
		case a.Deadline == nil && b.Deadline != nil:
			return 1
		case a.Deadline != nil && !a.Deadline.Equal(*b.Deadline):
			return a.Deadline.Compare(*b.Deadline)
		}
		return gocmp.Or(strings.Compare(a.Hostname, b.Hostname), strings.Compare(a.HostID, b.HostID))
	})
	if offset < len(rows) {
		out.Page = rows[offset:min(offset+limit, len(rows))]
	}
	return writeJSON(w, http.StatusOK, out)
}

// worse tells whether compliance status a is worse than b.
func worse(a, b string) bool { return statusRank[a] > statusRank[b] }

var statusRank = map[string]int{policy.Compliant: 0, policy.Excepted: 1, policy.AtRisk: 2, policy.Breached: 3}
