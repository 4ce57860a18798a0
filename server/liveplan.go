package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/vuln"
)

// The live plan: every host that sent an inventory, planned by package
// policy over the feeds' database and the policy in force, and kept
// current. Hosts are grouped by kernel situation (policy.Situation: the
// hosts of a group share one evaluation of the database), and a group is
// the unit of work: a host's new inventory re-plans its group only, a new
// database, policy or maintenance window re-plans every group, each with
// one policy.Plan call over its hosts, never one call per host. Deadlines
// pass and windows open without any input changing, so every group is also
// re-planned every replanEvery.

// replanEvery is how often the whole plan is made again when nothing
// changed: deadlines pass, windows open, inventories grow old.
const replanEvery = 5 * time.Minute

// livePlan is the Server's part that keeps the plan.
type livePlan struct {
	wake chan struct{} // makes the plan loop look at dirty groups

	mu         sync.RWMutex // guards everything below
	hosts      map[string]*planHost
	groups     map[string]*planGroup // by situation key
	dirty      map[string]bool       // groups to re-plan
	all        bool                  // re-plan every group
	gen        uint64                // the feeds' generation of the plans
	err        string                // why there is no plan (no database yet)
	pol        *policy.Policy
	polVersion int
	loaded     bool            // the stored inventories are in
	left       map[string]bool // groups hosts left since the last evaluation
	// builds are the Debian kernel builds any inventory reported, running
	// or installed (release -> newest package version): what a reboot
	// action that must install its kernel resolves against (kernelIndex).
	// buildsGen counts their changes.
	builds    map[string]string
	buildsGen uint64
	// ver counts the changes of anything GET /v1/admin/plan shows (hosts
	// in or out, a plan or its error, the policy, the feeds' generation);
	// fleet is the whole fleet's page header as of ver (planPage).
	ver   uint64
	fleet *fleetSummary
	// members counts the changes of the hosts in the plan (one joins or
	// leaves): the whole fleet's host ids stay while it does not change.
	members uint64

	evals atomic.Int64 // policy.Plan calls made, for tests and logs
}

// planHost is one host's inventory and plan.
type planHost struct {
	id    string
	inv   *inventory.Inventory
	group string // situation key; "" when the inventory cannot be judged
	err   string // why there is no plan
	plan  *policy.HostPlan
	at    time.Time // when plan (or err) was made
	now   time.Time // the plan's time (the server's clock when planning)
}

// planGroup is the hosts of one kernel situation.
type planGroup struct {
	id    string // short digest of the key, for the API
	hosts map[string]*planHost
}

func newLivePlan() *livePlan {
	return &livePlan{
		wake:   make(chan struct{}, 1),
		hosts:  map[string]*planHost{},
		groups: map[string]*planGroup{},
		dirty:  map[string]bool{},
		left:   map[string]bool{},
		builds: map[string]string{},
		pol:    policy.Default(),
	}
}

func (lp *livePlan) kick() {
	select {
	case lp.wake <- struct{}{}:
	default:
	}
}

// replanAll marks every group for re-planning: the database, the policy or
// the windows changed.
func (lp *livePlan) replanAll() {
	lp.mu.Lock()
	lp.all = true
	lp.mu.Unlock()
	lp.kick()
}

// setInventory takes a host's new inventory and marks its group.
func (lp *livePlan) setInventory(id string, inv *inventory.Inventory) {
	key, err := policy.Situation(inv)
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.setLocked(id, inv, key, err)
	lp.kickLocked()
}

func (lp *livePlan) kickLocked() {
	select {
	case lp.wake <- struct{}{}:
	default:
	}
}

// setPolicy puts policy p, version v, in force (the caller re-plans).
func (lp *livePlan) setPolicy(p *policy.Policy, v int) {
	lp.mu.Lock()
	lp.pol, lp.polVersion = p, v
	lp.ver++
	lp.mu.Unlock()
}

func (lp *livePlan) setLocked(id string, inv *inventory.Inventory, key string, err error) {
	lp.ver++
	h := lp.hosts[id]
	if h == nil {
		h = &planHost{id: id}
		lp.hosts[id] = h
		lp.members++
	}
	lp.leaveLocked(h)
	h.inv = inv
	if addBuilds(lp.builds, inv) {
		lp.buildsGen++
	}
	if err != nil {
		// Not judged, like a host stent plan refuses: say why, at once.
		h.group, h.plan, h.err, h.at = "", nil, fmt.Sprintf("inventory cannot be planned: %v", err), time.Now()
		return
	}
	h.group = key
	g := lp.groups[key]
	if g == nil {
		sum := sha256.Sum256([]byte(key))
		g = &planGroup{id: hex.EncodeToString(sum[:6]), hosts: map[string]*planHost{}}
		lp.groups[key] = g
	}
	g.hosts[id] = h
	lp.dirty[key] = true
}

// leaveLocked takes h out of its group; the group's other hosts keep their
// plans (a host's plan does not depend on the others').
func (lp *livePlan) leaveLocked(h *planHost) {
	lp.ver++
	if g := lp.groups[h.group]; g != nil {
		lp.left[h.group] = true // its actions lose the host
		delete(g.hosts, h.id)
		if len(g.hosts) == 0 {
			delete(lp.groups, h.group)
			delete(lp.dirty, h.group)
		}
	}
}

// replanHost marks the group of host id for re-planning: something its
// plan depends on besides its inventory changed (its labels, hence its
// maintenance window).
func (lp *livePlan) replanHost(id string) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if h := lp.hosts[id]; h != nil && h.group != "" {
		lp.dirty[h.group] = true
		lp.kickLocked()
	}
}

// removeHost forgets a revoked host; its group's actions lose it at once.
func (lp *livePlan) removeHost(id string) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if h := lp.hosts[id]; h != nil {
		lp.leaveLocked(h)
		delete(lp.hosts, id)
		lp.members++
		lp.kickLocked()
	}
}

// planLoop loads the stored inventories, then re-plans what changed
// whenever something does, until ctx ends.
func (s *Server) planLoop(ctx context.Context) {
	woken, cancel := s.fk.set.Subscribe()
	defer cancel()
	if err := s.loadPlanInventories(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("inventories not read for the live plan; they come back as hosts check in", "err", err)
	}
	t := time.NewTicker(replanEvery)
	defer t.Stop()
	for {
		s.replan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.lp.wake:
		case <-woken:
			s.lp.replanAll()
		case <-t.C:
			s.lp.replanAll()
		}
	}
}

// loadPlanInventories reads every host's stored inventory, page by page.
func (s *Server) loadPlanInventories(ctx context.Context) error {
	n := 0
	err := s.st.EachInventory(ctx, func(h *store.HostInventory) error {
		if len(h.Inventory) == 0 {
			return nil
		}
		inv, err := inventory.Decode("stored inventory of "+h.ID, bytes.NewReader(h.Inventory))
		if err != nil {
			s.log.Warn("stored inventory not read for the live plan", "host", h.ID, "err", err)
			return nil
		}
		key, kerr := policy.Situation(inv)
		s.lp.mu.Lock()
		if s.lp.hosts[h.ID] == nil { // a check-in may have been quicker
			s.lp.setLocked(h.ID, inv, key, kerr)
		}
		s.lp.mu.Unlock()
		n++
		return nil
	})
	s.lp.mu.Lock()
	s.lp.loaded, s.lp.all = true, true
	s.lp.mu.Unlock()
	s.log.Info("inventories loaded for the live plan", "hosts", n)
	return err
}

// replan plans the dirty groups (all of them after a change of database,
// policy or windows) and stores the plans.
func (s *Server) replan(ctx context.Context) {
	lp := s.lp
	db, gen := s.fk.set.DB()
	lp.mu.Lock()
	if !lp.loaded {
		lp.mu.Unlock()
		return
	}
	if db == nil {
		_, _, err := s.fk.set.DBStatus()
		why := "no vulnerability database yet: configure --feed (GET /v1/admin/feeds says how the feeds stand)"
		if err != nil {
			why = "no vulnerability database yet: " + err.Error()
		}
		if why != lp.err {
			lp.err = why
			lp.ver++
		}
		lp.mu.Unlock()
		return
	}
	if lp.err != "" {
		lp.err = ""
		lp.ver++
	}
	if gen != lp.gen {
		lp.all, lp.gen = true, gen
		lp.ver++
	}
	var keys []string
	all := lp.all
	if lp.all {
		for k := range lp.groups {
			keys = append(keys, k)
		}
		lp.all = false
	} else {
		for k := range lp.dirty {
			keys = append(keys, k)
		}
	}
	clear(lp.dirty)
	touched := map[string]bool{}
	for _, k := range keys {
		touched[k] = true
	}
	for k := range lp.left {
		touched[k] = true
	}
	clear(lp.left)
	// What each group's plan needs, copied: hosts check in meanwhile.
	type job struct {
		key  string
		ids  []string
		invs []*inventory.Inventory
	}
	jobs := make([]job, 0, len(keys))
	for _, k := range keys {
		g := lp.groups[k]
		if g == nil {
			continue
		}
		j := job{key: k}
		for id, h := range g.hosts {
			j.ids = append(j.ids, id)
			j.invs = append(j.invs, h.inv)
		}
		jobs = append(jobs, j)
	}
	pol := lp.pol
	lp.mu.Unlock()
	if len(jobs) == 0 {
		s.syncActions(ctx, mapKeys(touched))
		return
	}
	if all {
		// The CVE index holds the plans it was made of: every one is
		// replaced now, and the index would keep the old ones alive
		// beside the new. The next look at it makes it again.
		s.dropCVEIndex()
		defer s.dropCVEIndex()
	}
	start := time.Now()
	now := s.now().UTC()
	hosts := 0
	for _, j := range jobs {
		hosts += len(j.ids)
	}
	// Groups are planned by one worker per CPU: most groups are small, and
	// one policy.Plan call over a small group keeps one core busy.
	next := make(chan job)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				plans, errs := planGroupHosts(j.ids, j.invs, db, pol, s.planWindows(j.ids), now)
				lp.evals.Add(1)
				at := time.Now()
				lp.mu.Lock()
				for i, id := range j.ids {
					h := lp.hosts[id]
					if h == nil || h.inv != j.invs[i] {
						continue // revoked, or a newer inventory is on its way
					}
					h.plan, h.err, h.at, h.now = plans[i], errs[i], at, now
				}
				lp.ver++
				lp.mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	s.log.Debug("live plan made", "groups", len(jobs), "hosts", hosts, "took", time.Since(start))
	s.syncActions(ctx, mapKeys(touched))
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// planGroupHosts plans the hosts of one group: one policy.Plan call, or
// more when hosts share a hostname (Plan refuses that; the server knows
// them apart by id).
//
// wins are the hosts' windows from the server (planWindows; nil: none).
func planGroupHosts(ids []string, invs []*inventory.Inventory, db *vuln.DB, pol *policy.Policy, wins []*policy.Window, now time.Time) ([]*policy.HostPlan, []string) {
	plans, errs := make([]*policy.HostPlan, len(ids)), make([]string, len(ids))
	idx := map[string]int{}
	for i, id := range ids {
		idx[id] = i
	}
	left := make([]int, len(ids))
	for i := range left {
		left[i] = i
	}
	for len(left) > 0 {
		var in policy.Input
		seen := map[string]bool{}
		var rest []int
		var names []string
		var bwins []*policy.Window
		for _, i := range left {
			if seen[invs[i].Hostname] {
				rest = append(rest, i)
				continue
			}
			seen[invs[i].Hostname] = true
			in.Inventories, in.Names = append(in.Inventories, invs[i]), append(in.Names, ids[i])
			names = append(names, invs[i].Hostname)
			if wins != nil {
				bwins = append(bwins, wins[i])
			}
		}
		in.DB, in.Policy, in.Now = db, windowPolicy(pol, names, bwins), now
		fp, err := policy.Plan(in)
		if err != nil {
			// Hosts of one situation fail alike (Evaluate depends on the
			// situation only): every one of them gets the reason.
			for _, id := range in.Names {
				errs[idx[id]] = err.Error()
			}
		} else {
			for i := range fp.Hosts {
				hp := &fp.Hosts[i]
				plans[idx[hp.Inventory]] = hp
			}
		}
		left = rest
	}
	return plans, errs
}
