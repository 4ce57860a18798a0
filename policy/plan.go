package policy

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/vuln"
)

// PlanFormat marks a plan's JSON, so that stent report --plan can tell a
// plan from an inventory or a report.
const PlanFormat = "stent-plan"

// PlanSchemaVersion is the version of the plan JSON. Version 2 added
// "format" and the hosts' "resolved" fixes, which the report's history
// needs; a version 1 plan cannot be rendered as the same report.
const PlanSchemaVersion = 2

// Compliance statuses, from best to worst.
const (
	Compliant = "compliant"
	Excepted  = "excepted"
	AtRisk    = "at-risk"
	Breached  = "breached"
)

var statusRank = map[string]int{Compliant: 0, Excepted: 1, AtRisk: 2, Breached: 3}

// Action kinds, in the order a host's actions are listed.
const (
	ActApplyLivePatch  = "apply-livepatch"
	ActUpgradeUrgent   = "upgrade-package-now"
	ActEmergencyReboot = "emergency-reboot"
	ActMitigate        = "mitigate"
	ActUpgrade         = "upgrade-package"
	ActReboot          = "reboot"
	ActRestartServices = "restart-services"
	ActRemoveKernels   = "remove-old-kernels"
	ActReviewUnknown   = "review-unknown"
)

// Action is one thing to do on a host, with why and by when.
type Action struct {
	Kind      string     `json:"kind"`
	Summary   string     `json:"summary"`
	LivePatch string     `json:"live_patch,omitempty"`
	Package   string     `json:"package,omitempty"`
	Version   string     `json:"min_version,omitempty"`
	Kernel    string     `json:"kernel,omitempty"`
	Window    *Slot      `json:"window,omitempty"`
	Services  []string   `json:"services,omitempty"`
	Packages  []string   `json:"packages,omitempty"`
	Deadline  *time.Time `json:"deadline,omitempty"`
	CVEs      []string   `json:"cves,omitempty"`
	Rules     []string   `json:"rules"` // rule ids, or "inventory:<reason>" for what the host reported
	Note      string     `json:"note,omitempty"`
}

// Item is one CVE under one rule on one host.
type Item struct {
	CVE         string     `json:"cve"`
	State       vuln.State `json:"state"`
	Status      string     `json:"status"`
	Since       time.Time  `json:"since,omitzero"` // when the first remedy was released: the clock's start
	Deadline    time.Time  `json:"deadline,omitzero"`
	DaysExposed float64    `json:"days_exposed"`
	Note        string     `json:"note,omitempty"`
}

// RuleResult is a host's standing under one rule.
type RuleResult struct {
	Rule        string         `json:"rule"`
	Status      string         `json:"status"`
	DaysExposed float64        `json:"days_exposed"`       // the longest exposure counted against the rule
	Deadline    *time.Time     `json:"deadline,omitempty"` // the earliest deadline of an item at risk
	Counts      map[string]int `json:"counts"`
	Items       []Item         `json:"items,omitempty"` // items not simply compliant
	Note        string         `json:"note,omitempty"`  // why the status is what it is, when not from the items
}

// KernelInfo is the running and newest kernels of a host.
type KernelInfo struct {
	Release         string    `json:"release"`
	PackageVersion  string    `json:"package_version"`
	BootTime        time.Time `json:"boot_time"`
	NewestInstalled string    `json:"newest_installed,omitempty"`
}

// HostPlan is the plan for one host.
type HostPlan struct {
	Hostname   string             `json:"hostname"`
	Inventory  string             `json:"inventory,omitempty"`
	Distro     string             `json:"distro"`
	Kernel     KernelInfo         `json:"kernel"`
	Track      string             `json:"track,omitempty"`
	Counts     map[vuln.State]int `json:"counts"`
	Exposure   []vuln.Finding     `json:"exposure"`
	Actions    []Action           `json:"actions"`
	Compliance []RuleResult       `json:"compliance"`
	Evidence   []string           `json:"evidence"`
	// LivePatches are the patches applied on the host, for evidence.
	LivePatches []AppliedPatch `json:"live_patches"`
	// Resolved counts the CVEs the running kernel fixes, by when their
	// fix was released: each was open on the host from then until it
	// booted, which the report's history draws.
	Resolved []ResolvedFixes `json:"resolved"`
}

// ResolvedFixes is how many CVEs of one severity, fixed in the running
// kernel, had their fix released at one time.
type ResolvedFixes struct {
	FixReleased time.Time  `json:"fix_released"`
	Level       vuln.Level `json:"severity"`
	CVEs        int        `json:"cves"`
}

// groupResolved counts resolved CVEs by release time and severity, in
// that order, so that the plan carries the report's history compactly and
// deterministically.
func groupResolved(rs []vuln.Resolved) []ResolvedFixes {
	type key struct {
		t time.Time
		l vuln.Level
	}
	n := map[key]int{}
	for _, r := range rs {
		n[key{r.FixReleased.UTC(), r.Level}]++
	}
	out := make([]ResolvedFixes, 0, len(n))
	for k, c := range n {
		out = append(out, ResolvedFixes{FixReleased: k.t, Level: k.l, CVEs: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FixReleased.Equal(out[j].FixReleased) {
			return out[i].FixReleased.Before(out[j].FixReleased)
		}
		return out[i].Level < out[j].Level
	})
	return out
}

// AppliedPatch is a live patch applied on a host.
type AppliedPatch struct {
	Name      string     `json:"name"`
	Enabled   bool       `json:"enabled"`
	CVEs      []string   `json:"cves"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// FleetRule is the fleet's standing under one rule.
type FleetRule struct {
	Rule      string         `json:"rule"`
	Reference string         `json:"reference,omitempty"`
	Hosts     map[string]int `json:"hosts"` // hosts per status
	Breached  []string       `json:"breached_hosts,omitempty"`
}

// FleetPlan is the plan for a fleet.
type FleetPlan struct {
	Format        string          `json:"format"` // PlanFormat
	SchemaVersion int             `json:"schema_version"`
	GeneratedAt   time.Time       `json:"generated_at"`
	Policy        *Policy         `json:"policy"`
	Feeds         []vuln.FeedInfo `json:"feeds"`
	Fleet         []FleetRule     `json:"fleet"`
	Hosts         []HostPlan      `json:"hosts"`
}

// Input is what Plan needs.
type Input struct {
	Inventories []*inventory.Inventory
	Names       []string // where each inventory came from, for errors; may be nil
	DB          *vuln.DB
	Policy      *Policy
	Now         time.Time
}

// Plan decides the actions and compliance of every host. It fails on the
// first host it cannot judge (unknown distribution, unparsable version): a
// host left out would look compliant.
func Plan(in Input) (*FleetPlan, error) {
	p := in.Policy
	if p == nil {
		p = Default()
	}
	pl := &planner{in: in, policy: p, now: in.Now.UTC(), core: map[coreKey]*hostCore{}, judged: map[judgedKey]*judgedCore{}, resolved: map[*vuln.Exposure][]ResolvedFixes{}, slots: map[string]*Slot{}, hostActs: map[string][]Action{}}
	pl.patchReleased = map[string]time.Time{}
	for _, lp := range in.DB.Patches {
		pl.patchReleased[lp.Name] = lp.Released
	}
	fp := &FleetPlan{Format: PlanFormat, SchemaVersion: PlanSchemaVersion, GeneratedAt: pl.now, Policy: p, Feeds: in.DB.Feeds}
	seen := map[string]string{}
	names := make([]string, len(in.Inventories))
	for i, inv := range in.Inventories {
		names[i] = inv.Hostname
		if i < len(in.Names) {
			names[i] = in.Names[i]
		}
		if prev, dup := seen[inv.Hostname]; dup {
			return nil, fmt.Errorf("inventory %s: host %s is also in %s", names[i], inv.Hostname, prev)
		}
		seen[inv.Hostname] = names[i]
	}
	// Hosts are independent: plan them on every CPU. What hosts share
	// (exposures, compliance, actions) is memoized behind a mutex.
	fp.Hosts = make([]HostPlan, len(in.Inventories))
	errs := make([]error, len(in.Inventories))
	workers := runtime.GOMAXPROCS(0)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := int(next.Add(256)) - 256
				if start >= len(in.Inventories) {
					return
				}
				for i := start; i < start+256 && i < len(in.Inventories); i++ {
					hp, err := pl.host(in.Inventories[i])
					if err != nil {
						errs[i] = fmt.Errorf("inventory %s: %w", names[i], err)
						continue
					}
					if i < len(in.Names) {
						hp.Inventory = in.Names[i]
					}
					fp.Hosts[i] = hp
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(fp.Hosts, func(i, j int) bool { return fp.Hosts[i].Hostname < fp.Hosts[j].Hostname })
	fp.Fleet = Summarize(p, fp.Hosts)
	return fp, nil
}

// Summarize is the fleet's standing under each rule of p: hosts per
// status, and the breached hosts in the order of hosts. A plan put
// together from parts (the server's live plan, planned group by group)
// gets the Fleet that Plan would give it.
func Summarize(p *Policy, hosts []HostPlan) []FleetRule {
	var out []FleetRule
	for _, r := range p.Rules {
		fr := FleetRule{Rule: r.ID, Reference: r.Reference, Hosts: map[string]int{Compliant: 0, Excepted: 0, AtRisk: 0, Breached: 0}}
		for i := range hosts {
			for _, rr := range hosts[i].Compliance {
				if rr.Rule == r.ID {
					fr.Hosts[rr.Status]++
					if rr.Status == Breached {
						fr.Breached = append(fr.Breached, hosts[i].Hostname)
					}
				}
			}
		}
		out = append(out, fr)
	}
	return out
}

// Situation is the key of inv's kernel situation (distribution, running
// and newest kernel builds, applied live patches): hosts with equal keys
// share one evaluation, so a planner that keeps a plan current re-plans
// a host's situation group when its inventory changes. An inventory the
// planner cannot judge is an error, as in Plan.
func Situation(inv *inventory.Inventory) (string, error) {
	h, err := vuln.HostFromInventory(inv)
	if err != nil {
		return "", err
	}
	return h.Key(), nil
}

type planner struct {
	in            Input
	policy        *Policy
	now           time.Time
	patchReleased map[string]time.Time
	mu            sync.Mutex
	core          map[coreKey]*hostCore
	judged        map[judgedKey]*judgedCore
	resolved      map[*vuln.Exposure][]ResolvedFixes
	slots         map[string]*Slot    // window name → next slot
	hostActs      map[string][]Action // hostActions' lists, by what they depend on
}

// judgedKey identifies what compliance depends on: the exposure and the
// exceptions that name the host.
type judgedKey struct {
	exp        *vuln.Exposure
	exceptions string
}

// judgedCore is the compliance of hosts in one situation, with what the
// actions need from it: each finding's earliest deadline and exceptions.
type judgedCore struct {
	compliance     []RuleResult
	deadlines      []*time.Time
	fully          []bool
	exceptedUrgent []bool
}

// coreKey identifies what a host's compliance and CVE actions depend on,
// so hosts in the same situation share them.
type coreKey struct {
	exp        *vuln.Exposure
	exceptions string
	window     string
	meta       string
	newest     string
	scheme     vuln.Scheme
}

// hostCore is the part of a host plan shared by hosts in one situation.
type hostCore struct {
	compliance []RuleResult
	actions    []Action
}

func (pl *planner) host(inv *inventory.Inventory) (HostPlan, error) {
	h, err := vuln.HostFromInventory(inv)
	if err != nil {
		return HostPlan{}, err
	}
	exp, err := pl.in.DB.Evaluate(h)
	if err != nil {
		return HostPlan{}, fmt.Errorf("host %s: %w", inv.Hostname, err)
	}
	hp := HostPlan{
		Hostname: inv.Hostname, Distro: inv.OS.ID + " " + h.Release, Track: exp.Track,
		Kernel: KernelInfo{Release: inv.Kernel.Release, PackageVersion: inv.Kernel.PackageVersion, BootTime: inv.Kernel.BootTime, NewestInstalled: inv.NewestKernel},
		Counts: exp.Counts, Exposure: exp.Findings,
	}
	pl.mu.Lock()
	res, ok := pl.resolved[exp]
	pl.mu.Unlock()
	if !ok {
		res = groupResolved(exp.Resolved)
		pl.mu.Lock()
		pl.resolved[exp] = res
		pl.mu.Unlock()
	}
	hp.Resolved = res
	if hp.Exposure == nil {
		hp.Exposure = []vuln.Finding{}
	}
	// Which exceptions and windows concern this host.
	var exc []int
	for i := range pl.policy.Exceptions {
		if pl.policy.Exceptions[i].appliesTo(inv.Hostname) {
			exc = append(exc, i)
		}
	}
	slot := pl.nextSlot(inv.Hostname)
	meta := ""
	if len(inv.Metapackages) > 0 {
		meta = inv.Metapackages[0].Name
	} else if inv.OS.Family == "rpm" {
		meta = "kernel"
	} else {
		meta = "linux-image-" + flavour(inv.Kernel.Release)
	}
	var excKey strings.Builder
	for _, i := range exc {
		excKey.WriteString(strconv.Itoa(i))
		excKey.WriteByte(',')
	}
	key := coreKey{exp: exp, exceptions: excKey.String(), meta: meta, newest: h.Newest.Release, scheme: h.Scheme}
	if slot != nil {
		key.window = slot.Window
	}
	pl.mu.Lock()
	core := pl.core[key]
	pl.mu.Unlock()
	if core == nil {
		jk := judgedKey{exp: exp, exceptions: key.exceptions}
		pl.mu.Lock()
		jc := pl.judged[jk]
		pl.mu.Unlock()
		if jc == nil {
			jc = pl.judgeAll(exp, exc)
			pl.mu.Lock()
			pl.judged[jk] = jc
			pl.mu.Unlock()
		}
		core = &hostCore{compliance: jc.compliance, actions: pl.cveActions(exp, jc, slot, meta, h)}
		pl.mu.Lock()
		pl.core[key] = core
		pl.mu.Unlock()
	}
	hp.Compliance = pl.trustInventory(inv, core.compliance)
	hp.Actions = pl.hostActions(inv, core.actions, slot)
	hp.Evidence = evidence(inv)
	hp.LivePatches = []AppliedPatch{}
	for _, lp := range inv.LivePatches {
		hp.LivePatches = append(hp.LivePatches, AppliedPatch{Name: lp.Name, Enabled: lp.Enabled, CVEs: lp.CVEs, AppliedAt: lp.AppliedAt})
	}
	return hp, nil
}

// trustInventory returns compliance as it stands when the inventory is
// fresh; an inventory older than the policy allows, or dated in the future,
// says nothing reliable about the host now, so no rule is compliant on its
// word: those become at risk, with the reason. The shared slice is copied,
// never changed.
func (pl *planner) trustInventory(inv *inventory.Inventory, comp []RuleResult) []RuleResult {
	maxAge := time.Duration(pl.policy.MaxInventoryAgeDays) * day
	var why string
	switch age := pl.now.Sub(inv.CollectedAt); {
	case inv.CollectedAt.IsZero():
		why = "the inventory has no collection time"
	case age > maxAge:
		why = fmt.Sprintf("the inventory is %.0f days old (collected %s; the policy trusts %d days): collect it again", days(age), inv.CollectedAt.Format(time.RFC3339), pl.policy.MaxInventoryAgeDays)
	case age < -time.Hour:
		why = fmt.Sprintf("the inventory is dated %s, after the plan's time %s: check the host's clock", inv.CollectedAt.Format(time.RFC3339), pl.now.Format(time.RFC3339))
	default:
		return comp
	}
	out := make([]RuleResult, len(comp))
	copy(out, comp)
	for i := range out {
		if out[i].Status == Compliant {
			out[i].Status = AtRisk
			out[i].Note = why
		}
	}
	return out
}

// flavour is the kernel flavour at the end of a Debian release
// ("6.1.0-56-cloud-amd64" → "cloud-amd64").
func flavour(release string) string {
	parts := strings.SplitN(release, "-", 3)
	if len(parts) == 3 {
		return parts[2]
	}
	return release
}

func (pl *planner) nextSlot(host string) *Slot {
	var best *Slot
	for i := range pl.policy.Windows {
		w := &pl.policy.Windows[i]
		if !w.appliesTo(host) {
			continue
		}
		pl.mu.Lock()
		s, ok := pl.slots[w.Name]
		if !ok {
			if next, found := w.Next(pl.now); found {
				s = &next
			}
			pl.slots[w.Name] = s
		}
		pl.mu.Unlock()
		if s != nil && (best == nil || s.Start.Before(best.Start)) {
			best = s
		}
	}
	return best
}

func evidence(inv *inventory.Inventory) []string {
	ev := []string{fmt.Sprintf("running kernel %s (%s) since %s", inv.Kernel.Release, inv.Kernel.PackageVersion, inv.Kernel.BootTime.Format(time.RFC3339))}
	if inv.NewestKernel != "" && inv.NewestKernel != inv.Kernel.Release {
		if np := inv.NewestPackage(); np != nil {
			ev = append(ev, fmt.Sprintf("newest installed kernel %s (%s)", np.Release, np.Version))
		}
	}
	for _, lp := range inv.LivePatches {
		s := fmt.Sprintf("live patch %s", lp.Name)
		switch {
		case !lp.Enabled:
			s += " loaded but disabled"
		case lp.AppliedAt != nil:
			s += " applied " + lp.AppliedAt.Format(time.RFC3339)
		default:
			s += " applied"
		}
		if lp.Manifest {
			s += " fixes " + strings.Join(lp.CVEs, ", ")
		} else {
			s += " (no manifest: fixes nothing Stent can vouch for)"
		}
		ev = append(ev, s)
	}
	ev = append(ev, "inventory collected "+inv.CollectedAt.Format(time.RFC3339))
	return ev
}

func days(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return float64(int64(d.Hours()/24*10+0.5)) / 10
}

func tp(t time.Time) *time.Time { return &t }

// judge is a finding under a rule.
type judged struct {
	item     Item
	applies  bool
	excepted bool
	fullyExc bool // excepted from every rule (no actions)
}

// clock returns when the first remedy for f counted by rule r was
// released, or false when there is none with a known date.
func (pl *planner) clock(f *vuln.Finding, r *Rule) (time.Time, bool) {
	var t time.Time
	take := func(c time.Time) {
		if !c.IsZero() && (t.IsZero() || c.Before(t)) {
			t = c
		}
	}
	if f.FixReleased != nil {
		take(*f.FixReleased)
	}
	if r.LivePatchCounts {
		if f.LivePatch != "" {
			take(pl.patchReleased[f.LivePatch])
		}
		if f.AvailablePatch != "" {
			take(pl.patchReleased[f.AvailablePatch])
		}
	}
	if t.IsZero() && f.Published != nil && (f.State == vuln.FixedInstalled || f.State == vuln.UpdateNeeded || f.State == vuln.FixedLivePatch) {
		// A fix exists but its release date is unknown: count from the
		// publication, which can only make the deadline earlier.
		t = *f.Published
	}
	return t, !t.IsZero()
}

// judge rates one finding under one rule for a host with exceptions exc.
func (pl *planner) judge(f *vuln.Finding, r *Rule, exc []int) judged {
	j := judged{item: Item{CVE: f.CVE, State: f.State}}
	unrated := false
	if !r.covers(f.Severity) {
		if !r.unrated(f.Severity) {
			return j
		}
		// Nothing says how severe it is: it may be under this rule.
		unrated = true
	}
	if r.Kind == KindMaxKernelAge && f.State == vuln.NoFix {
		return j // nothing released to boot
	}
	j.applies = true
	var expired []string
	for _, i := range exc {
		e := &pl.policy.Exceptions[i]
		if !e.coversCVE(f.CVE) || !e.coversRule(r.ID) {
			continue
		}
		if pl.now.Before(e.Expires) {
			j.excepted = true
			j.item.Status = Excepted
			j.item.Note = fmt.Sprintf("exception until %s: %s", e.Expires.Format(time.RFC3339), e.Reason)
			if len(e.Rules) == 0 {
				j.fullyExc = true
			}
		} else {
			expired = append(expired, e.Expires.Format("2006-01-02"))
		}
	}
	if j.excepted {
		return j
	}
	if f.State == vuln.FixedLivePatch && r.LivePatchCounts {
		j.item.Status = Compliant
		j.item.Note = "live patch " + f.LivePatch + " applied"
		return j
	}
	since, ok := pl.clock(f, r)
	switch {
	case f.State == vuln.Unknown:
		j.item.Status, j.item.Note = AtRisk, "state unknown: no feed speaks for this kernel"
	case !ok:
		j.item.Status, j.item.Note = AtRisk, "no fix released yet"
	default:
		deadline := since.Add(time.Duration(r.Within))
		j.item.Since, j.item.Deadline = since, deadline
		j.item.DaysExposed = days(pl.now.Sub(since))
		if pl.now.After(deadline) {
			j.item.Status = Breached
		} else {
			j.item.Status = AtRisk
		}
	}
	if f.State == vuln.Unknown || f.State == vuln.NoFix {
		if f.Published != nil {
			j.item.DaysExposed = days(pl.now.Sub(*f.Published))
		}
	}
	if unrated {
		// Not known to be under the rule, so not breached; not known to be
		// outside it, so never compliant.
		j.item.Status, j.item.Deadline = AtRisk, time.Time{}
		j.item.Note = strings.TrimPrefix(j.item.Note+"; severity unknown (no CVSS score or distribution urgency): counted as at risk until scored", "; ")
	}
	if len(expired) > 0 {
		j.item.Note += "; exception expired " + strings.Join(expired, ", ")
	}
	return j
}

// judgeAll rates every finding of an exposure under every rule.
func (pl *planner) judgeAll(exp *vuln.Exposure, exc []int) *judgedCore {
	c := &judgedCore{}
	deadlines := make([]*time.Time, len(exp.Findings))
	fully := make([]bool, len(exp.Findings))
	exceptedUrgent := make([]bool, len(exp.Findings))
	notes := map[string]string{}
	for ri := range pl.policy.Rules {
		r := &pl.policy.Rules[ri]
		rr := RuleResult{Rule: r.ID, Status: Compliant, Counts: map[string]int{}}
		for fi := range exp.Findings {
			f := &exp.Findings[fi]
			j := pl.judge(f, r, exc)
			if !j.applies {
				continue
			}
			rr.Counts[j.item.Status]++
			if j.fullyExc {
				fully[fi] = true
			}
			if j.excepted && r.Kind == KindUrgent {
				exceptedUrgent[fi] = true
			}
			if statusRank[j.item.Status] > statusRank[rr.Status] {
				rr.Status = j.item.Status
			}
			if j.item.Status == AtRisk || j.item.Status == Breached {
				if j.item.DaysExposed > rr.DaysExposed {
					rr.DaysExposed = j.item.DaysExposed
				}
				if d := j.item.Deadline; !d.IsZero() {
					if rr.Deadline == nil || d.Before(*rr.Deadline) {
						rr.Deadline = tp(d)
					}
					if deadlines[fi] == nil || d.Before(*deadlines[fi]) {
						deadlines[fi] = tp(d)
					}
				}
			}
			if j.item.Status != Compliant || j.item.Note != "" {
				if n, ok := notes[j.item.Note]; ok {
					j.item.Note = n // one copy of each: many items say the same
				} else {
					notes[j.item.Note] = j.item.Note
				}
				rr.Items = append(rr.Items, j.item)
			}
		}
		if cap(rr.Items) > len(rr.Items) {
			// Kept as long as the plan: without append's spare room.
			rr.Items = append(make([]Item, 0, len(rr.Items)), rr.Items...)
		}
		c.compliance = append(c.compliance, rr)
	}
	c.deadlines, c.fully, c.exceptedUrgent = deadlines, fully, exceptedUrgent
	return c
}
