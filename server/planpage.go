package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// GET /v1/admin/plan: pages of the live plan. An answer for a label
// selector costs one pass over the selected hosts; one for a host, one
// pass over the hosts' names; the whole fleet's header (counts, standing
// per rule) is kept between changes of the plan or of the hosts
// (livePlan.ver, Server.hostsGen), so that a page of the whole fleet costs
// its own hosts only: dashboards and scripts poll it.

func (s *Server) planRoutes() []route {
	return []route{
		{"GET " + api.PathPlan, api.RoleViewer, s.handlePlan},
		{"GET " + api.PathPlanReport, api.RoleViewer, s.handlePlanReport},
	}
}

// handlePlan serves a page of the live plan.
func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sel, err := api.ParseLabels(q["label"])
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	limit := api.PlanLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errorf(http.StatusBadRequest, "bad_request", "limit %q: want a positive number (at most %d)", v, api.MaxPlanLimit)
		}
		limit = min(n, api.MaxPlanLimit)
	}
	page, err := s.planPage(api.PlanQuery{Selector: sel, Host: q.Get("host"), After: q.Get("after"), Limit: limit})
	if err != nil {
		return err
	}
	return writePlanPage(w, page)
}

// writePlanPage writes page as writeJSON would, a host at a time: a host's
// plan is its whole exposure (hundreds of KB), and a page of a thousand
// would otherwise be encoded whole in memory first.
func writePlanPage(w http.ResponseWriter, page *api.PlanPage) error {
	hosts := page.Page
	page.Page = []api.PlanHost{}
	head, err := json.Marshal(page)
	page.Page = hosts
	if err != nil {
		return err
	}
	return streamJSON(w, head, "page", hosts)
}

// streamJSON writes head, an object encoded with its list field key
// empty, with items in that list, encoded one at a time (a 200 response).
// The field must be the only one of that name at any depth: the last
// `"key":[]` outside a string is taken (quotes in strings are escaped).
func streamJSON[T any](w http.ResponseWriter, head []byte, key string, items []T) error {
	empty := `"` + key + `":[]`
	i := bytes.LastIndex(head, []byte(empty))
	if i < 0 {
		return fmt.Errorf("JSON without its %s list: %.100s", key, head)
	}
	i += len(empty) - 1
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head[:i])
	for j := range items {
		if j > 0 {
			bw.WriteByte(',')
		}
		b, err := json.Marshal(&items[j])
		if err != nil {
			return err
		}
		bw.Write(b)
	}
	bw.Write(head[i:])
	bw.WriteByte('\n')
	return bw.Flush()
}

// fleetSummary is the whole fleet's page header: the hosts in the plan
// that are enrolled (not revoked), in id order, and their counts.
type fleetSummary struct {
	ver, hostsGen uint64
	members       uint64 // livePlan.members of ids
	ids           []string
	hosts, groups int
	failed        int
	fleet         []policy.FleetRule
	generatedAt   time.Time
}

// planPage answers a plan query: the selected hosts' counts and fleet
// standing, and one page of them.
func (s *Server) planPage(q api.PlanQuery) (*api.PlanPage, error) {
	if q.Limit <= 0 {
		q.Limit = api.PlanLimit
	}
	if len(q.Selector) == 0 && q.Host == "" {
		if out := s.fleetPage(q); out != nil {
			return out, nil
		}
	}
	whole := len(q.Selector) == 0 && q.Host == ""
	known, byID, hostsGen := s.selectHosts(q)
	db, _ := s.fk.set.DB()

	lp := s.lp
	lp.mu.RLock()
	out := lp.pageHeader(db)
	ids, err := lp.selectIDs(q, known, byID)
	if err != nil {
		lp.mu.RUnlock()
		return nil, err
	}
	sum := lp.summarize(ids)
	ver, members := lp.ver, lp.members
	sum.fill(out)
	lp.fillPage(out, ids, q, func(id string) map[string]string { return known[id].labels })
	lp.mu.RUnlock()
	if whole {
		// Kept for the next query of the whole fleet, unless the plan
		// changed meanwhile.
		sum.ver, sum.hostsGen, sum.members = ver, hostsGen, members
		lp.keepFleet(sum)
	}
	return out, nil
}

// planMeta is what a plan query reads of an enrolled host.
type planMeta struct {
	hostname string
	labels   map[string]string
}

// selectHosts returns the enrolled hosts q's selector and host may
// select, and whether q.Host is a host id. A host named by its id is
// looked up; a name, by a pass over the hosts (a host id is never a
// hostname).
func (s *Server) selectHosts(q api.PlanQuery) (known map[string]planMeta, byID bool, hostsGen uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if h := s.hosts[q.Host]; q.Host != "" && h != nil {
		known = map[string]planMeta{}
		if h.RevokedAt.IsZero() && hasLabels(h.Labels, q.Selector) {
			known[h.ID] = planMeta{h.Hostname, h.Labels}
		}
		return known, true, s.hostsGen
	}
	known = make(map[string]planMeta, len(s.hosts))
	for id, h := range s.hosts {
		if h.RevokedAt.IsZero() && hasLabels(h.Labels, q.Selector) {
			known[id] = planMeta{h.Hostname, h.Labels}
		}
	}
	return known, false, s.hostsGen
}

// selectIDs returns the hosts of the plan that q selects among known, in
// id order; 404 when q names a host that is not there. Callers hold
// lp.mu.
func (lp *livePlan) selectIDs(q api.PlanQuery, known map[string]planMeta, byID bool) ([]string, error) {
	var ids []string
	if byID {
		if _, ok := known[q.Host]; ok && lp.hosts[q.Host] != nil {
			ids = append(ids, q.Host)
		}
	} else {
		for id, h := range lp.hosts {
			m, ok := known[id]
			if !ok || (q.Host != "" && q.Host != id && q.Host != m.hostname && q.Host != h.inv.Hostname) {
				continue
			}
			ids = append(ids, id)
		}
	}
	if q.Host != "" && len(ids) == 0 {
		return nil, errorf(http.StatusNotFound, "not_found", "no host %s in the plan: not enrolled, revoked, or it sent no inventory yet", q.Host)
	}
	sort.Strings(ids)
	return ids, nil
}

// fleetPage answers a query for the whole fleet from the kept header, or
// nil when the hosts changed since it was made. When only their plans
// did, it counts them again (a pass over the hosts, no selection).
func (s *Server) fleetPage(q api.PlanQuery) *api.PlanPage {
	s.mu.RLock()
	hostsGen := s.hostsGen
	s.mu.RUnlock()
	db, _ := s.fk.set.DB()
	lp := s.lp
	lp.mu.RLock()
	sum := lp.fleet
	if sum == nil || sum.hostsGen != hostsGen || sum.members != lp.members {
		lp.mu.RUnlock()
		return nil
	}
	fresh := sum.ver != lp.ver
	if fresh {
		ids := sum.ids
		sum = lp.summarize(ids)
		sum.ver, sum.hostsGen, sum.members = lp.ver, hostsGen, lp.members
	}
	out := lp.pageHeader(db)
	sum.fill(out)
	lp.fillPage(out, sum.ids, q, nil)
	lp.mu.RUnlock()
	if fresh {
		lp.keepFleet(sum)
	}
	// The page's labels, read after: lp.mu is never held while waiting
	// for s.mu.
	s.mu.RLock()
	for i := range out.Page {
		if h := s.hosts[out.Page[i].HostID]; h != nil {
			out.Page[i].Labels = h.Labels
		}
	}
	s.mu.RUnlock()
	return out
}

// keepFleet keeps sum as the whole fleet's header, unless the plan
// changed since it was made.
func (lp *livePlan) keepFleet(sum *fleetSummary) {
	lp.mu.Lock()
	if lp.ver == sum.ver && lp.members == sum.members {
		lp.fleet = sum
	}
	lp.mu.Unlock()
}

// pageHeader is a page without counts or hosts. Callers hold lp.mu.
func (lp *livePlan) pageHeader(db *vuln.DB) *api.PlanPage {
	out := &api.PlanPage{FeedGeneration: lp.gen, PolicyVersion: lp.polVersion, Error: lp.err, Policy: lp.pol, Feeds: []vuln.FeedInfo{}, Page: []api.PlanHost{}}
	if db != nil && lp.err == "" {
		out.Feeds = db.Feeds
	}
	return out
}

// summarize counts the hosts ids (sorted, all in the plan). Callers hold
// lp.mu.
func (lp *livePlan) summarize(ids []string) *fleetSummary {
	sum := &fleetSummary{ids: ids, hosts: len(ids)}
	fleet := newFleetCounter(lp.pol)
	groups := map[string]bool{}
	for _, id := range ids {
		h := lp.hosts[id]
		if h.group != "" {
			groups[h.group] = true
		}
		if h.plan == nil {
			sum.failed++
			continue
		}
		fleet.add(h.plan)
		if sum.generatedAt.IsZero() || h.now.Before(sum.generatedAt) {
			sum.generatedAt = h.now
		}
	}
	sum.groups, sum.fleet = len(groups), fleet.rules
	return sum
}

func (sum *fleetSummary) fill(out *api.PlanPage) {
	out.Hosts, out.Groups, out.Failed, out.GeneratedAt = sum.hosts, sum.groups, sum.failed, sum.generatedAt
	// Each answer gets its own copy: the kept one is shared.
	out.Fleet = make([]policy.FleetRule, len(sum.fleet))
	for i, fr := range sum.fleet {
		fr.Breached = slices.Clone(fr.Breached)
		hosts := make(map[string]int, len(fr.Hosts))
		for k, v := range fr.Hosts {
			hosts[k] = v
		}
		fr.Hosts = hosts
		out.Fleet[i] = fr
	}
}

// fillPage adds to out the page of ids (sorted) that q asks for: at most
// q.Limit hosts after q.After. labels gives a host's labels (nil: none
// yet). Callers hold lp.mu.
func (lp *livePlan) fillPage(out *api.PlanPage, ids []string, q api.PlanQuery, labels func(string) map[string]string) {
	start := sort.SearchStrings(ids, q.After)
	if start < len(ids) && ids[start] == q.After {
		start++
	}
	for _, id := range ids[start:] {
		if len(out.Page) == q.Limit {
			out.Next = out.Page[len(out.Page)-1].HostID
			break
		}
		h := lp.hosts[id]
		ph := api.PlanHost{HostID: id, Error: h.err, Plan: h.plan}
		if labels != nil {
			ph.Labels = labels(id)
		}
		if g := lp.groups[h.group]; g != nil {
			ph.Group = g.id
		}
		if !h.at.IsZero() {
			ph.EvaluatedAt = h.at.UTC()
		}
		if h.plan == nil && h.err == "" {
			ph.Error = "not planned yet"
			if lp.err != "" {
				ph.Error = lp.err
			}
		}
		out.Page = append(out.Page, ph)
	}
}

// fleetCounter sums hosts' compliance per rule as policy.Summarize does,
// with at most api.MaxBreachedNames names per rule.
type fleetCounter struct {
	rules []policy.FleetRule
	index map[string]int
}

func newFleetCounter(p *policy.Policy) *fleetCounter {
	fc := &fleetCounter{rules: policy.Summarize(p, nil), index: map[string]int{}}
	if fc.rules == nil {
		fc.rules = []policy.FleetRule{}
	}
	for i, r := range fc.rules {
		fc.index[r.Rule] = i
	}
	return fc
}

func (fc *fleetCounter) add(hp *policy.HostPlan) {
	for _, rr := range hp.Compliance {
		i, ok := fc.index[rr.Rule]
		if !ok {
			continue // planned under an older policy; re-planned soon
		}
		fr := &fc.rules[i]
		fr.Hosts[rr.Status]++
		if rr.Status == policy.Breached && len(fr.Breached) < api.MaxBreachedNames {
			fr.Breached = append(fr.Breached, hp.Hostname)
		}
	}
}
