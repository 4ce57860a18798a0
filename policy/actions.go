package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/vuln"
)

// group gathers the CVEs and rules behind one action.
type group struct {
	cves     []string
	rules    map[string]bool
	deadline *time.Time
	version  string
}

func (g *group) add(f *vuln.Finding, d *time.Time) {
	g.cves = append(g.cves, f.CVE)
	if g.rules == nil {
		g.rules = map[string]bool{}
	}
	if d != nil && (g.deadline == nil || d.Before(*g.deadline)) {
		g.deadline = d
	}
}

func (g *group) ruleList() []string {
	out := make([]string, 0, len(g.rules))
	for r := range g.rules {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (pl *planner) rulesFor(f *vuln.Finding) []string {
	var out []string
	for i := range pl.policy.Rules {
		r := &pl.policy.Rules[i]
		if r.covers(f.Severity) && !(r.Kind == KindMaxKernelAge && f.State == vuln.NoFix) {
			out = append(out, r.ID)
		}
	}
	return out
}

// cveActions decides what to do about each finding of exp (classify) and
// gathers the findings into actions for a host in one situation: its next
// maintenance slot, the kernel metapackage to upgrade (meta) and its
// kernels (h).
func (pl *planner) cveActions(exp *vuln.Exposure, jc *judgedCore, slot *Slot, meta string, h vuln.Host) []Action {
	var urgent *Rule
	for i := range pl.policy.Rules {
		if pl.policy.Rules[i].Kind == KindUrgent {
			urgent = &pl.policy.Rules[i]
			break
		}
	}
	s := newActionSet(h.Scheme)
	for fi := range exp.Findings {
		f := &exp.Findings[fi]
		b := classify(caseOf(f, urgent, jc.fully[fi], jc.exceptedUrgent[fi]))
		if b == 0 {
			continue
		}
		d := jc.deadlines[fi]
		var ud *time.Time
		if b&urgentBuckets != 0 {
			ud = pl.urgentDeadline(f, urgent)
		}
		s.add(f, b, pl.rulesFor(f), d, ud)
	}
	return pl.actions(s, slot, meta, h)
}

// actionSet gathers findings by bucket, in the order they come.
type actionSet struct {
	scheme                                                    vuln.Scheme
	patches                                                   map[string]*group // live patch name → the urgent CVEs it fixes
	patchOrder                                                []string
	upgradeNow, emergency, mitigate, upgrade, reboot, unknown group
	unknownPatches                                            map[string][]string // live patch → the unknown CVEs it names
	unknownPatchOrder                                         []string
}

func newActionSet(scheme vuln.Scheme) *actionSet {
	return &actionSet{scheme: scheme, patches: map[string]*group{}, unknownPatches: map[string][]string{}}
}

// maxVersion raises g's package version to v when v is later.
func (s *actionSet) maxVersion(g *group, v string) {
	if v == "" {
		return
	}
	if g.version == "" {
		g.version = v
	} else if c, err := vuln.CompareVersions(s.scheme, v, g.version); err == nil && c > 0 {
		g.version = v
	}
}

// add puts finding f, which counts under rules, into the groups of
// buckets b: the urgent ones with the urgent deadline ud, the others with
// the finding's own deadline d.
func (s *actionSet) add(f *vuln.Finding, b bucket, rules []string, d, ud *time.Time) {
	addTo := func(g *group, dl *time.Time) {
		g.add(f, dl)
		for _, r := range rules {
			g.rules[r] = true
		}
	}
	if b&bApplyPatch != 0 {
		g := s.patches[f.AvailablePatch]
		if g == nil {
			g = &group{}
			s.patches[f.AvailablePatch] = g
			s.patchOrder = append(s.patchOrder, f.AvailablePatch)
		}
		addTo(g, ud)
	}
	if b&bUpgradeNow != 0 {
		addTo(&s.upgradeNow, ud)
		s.maxVersion(&s.upgradeNow, f.FixedIn)
	}
	if b&bEmergency != 0 {
		addTo(&s.emergency, ud)
	}
	if b&bMitigate != 0 {
		addTo(&s.mitigate, ud)
	}
	if b&bUpgrade != 0 {
		addTo(&s.upgrade, d)
		s.maxVersion(&s.upgrade, f.FixedIn)
	}
	if b&bReboot != 0 {
		addTo(&s.reboot, d)
	}
	if b&bReview != 0 {
		addTo(&s.unknown, nil)
	}
	if p := f.AvailablePatch; b&bPatchNote != 0 && p != "" {
		if s.unknownPatches[p] == nil {
			s.unknownPatchOrder = append(s.unknownPatchOrder, p)
		}
		s.unknownPatches[p] = append(s.unknownPatches[p], f.CVE)
	}
}

// actions turns the gathered groups into the host's CVE actions, in the
// order docs/policy.md lists them. One reboot takes every fix: an
// emergency reboot absorbs the window's, an urgent upgrade the scheduled
// one.
func (pl *planner) actions(s *actionSet, slot *Slot, meta string, h vuln.Host) []Action {
	upgradeNow, emergency, upgrade, reboot := s.upgradeNow, s.emergency, s.upgrade, s.reboot
	var acts []Action
	for _, name := range s.patchOrder {
		g := s.patches[name]
		acts = append(acts, Action{Kind: ActApplyLivePatch, LivePatch: name, Summary: fmt.Sprintf("apply live patch %s now", name),
			Deadline: g.deadline, CVEs: g.cves, Rules: g.ruleList()})
	}
	target := h.Newest.Release
	if len(upgradeNow.cves) > 0 {
		acts = append(acts, Action{Kind: ActUpgradeUrgent, Package: meta, Version: upgradeNow.version,
			Summary:  fmt.Sprintf("upgrade %s to %s or later now", meta, upgradeNow.version),
			Deadline: upgradeNow.deadline, CVEs: upgradeNow.cves, Rules: upgradeNow.ruleList()})
		// The urgent upgrade covers the others too.
		if len(upgrade.cves) > 0 {
			s.maxVersion(&upgradeNow, upgrade.version)
			acts[len(acts)-1].Version = upgradeNow.version
			acts[len(acts)-1].Summary = fmt.Sprintf("upgrade %s to %s or later now", meta, upgradeNow.version)
			acts[len(acts)-1].CVEs = append(acts[len(acts)-1].CVEs, upgrade.cves...)
			for r := range upgrade.rules {
				upgradeNow.rules[r] = true
			}
			acts[len(acts)-1].Rules = upgradeNow.ruleList()
			upgrade = group{}
		}
		// The reboot is into what the upgrade installs: the later version
		// when it took the scheduled upgrade along.
		target = fmt.Sprintf("the kernel of %s %s or later", meta, upgradeNow.version)
	}
	if len(emergency.cves) > 0 {
		// One reboot takes every fix: fold the window's reboot into it.
		cves := append(append([]string(nil), emergency.cves...), reboot.cves...)
		for r := range reboot.rules {
			emergency.rules[r] = true
		}
		a := Action{Kind: ActEmergencyReboot, Kernel: target, Deadline: emergency.deadline, CVEs: dedup(cves), Rules: emergency.ruleList()}
		a.Summary = fmt.Sprintf("emergency reboot into %s", target)
		if emergency.deadline != nil {
			a.Summary += " before " + emergency.deadline.Format(time.RFC3339)
			if emergency.deadline.Before(pl.now) {
				a.Note = "overdue: the urgent deadline has passed"
			}
		} else {
			a.Summary += " now"
		}
		acts = append(acts, a)
		reboot = group{}
	}
	if m := s.mitigate; len(m.cves) > 0 {
		acts = append(acts, Action{Kind: ActMitigate, Deadline: m.deadline, CVEs: m.cves, Rules: m.ruleList(),
			Summary: "no fixed kernel or live patch is released for these urgent CVEs: mitigate (disable the affected feature or module) and watch for a fix"})
	}
	if len(upgrade.cves) > 0 {
		a := Action{Kind: ActUpgrade, Package: meta, Version: upgrade.version, Deadline: upgrade.deadline, CVEs: upgrade.cves, Rules: upgrade.ruleList(),
			Summary: fmt.Sprintf("upgrade %s to %s or later before the reboot", meta, upgrade.version)}
		target = fmt.Sprintf("the kernel of %s %s or later", meta, upgrade.version)
		acts = append(acts, a)
	}
	if len(reboot.cves) > 0 {
		acts = append(acts, pl.windowReboot(target, dedup(reboot.cves), reboot.ruleList(), reboot.deadline, slot))
	}
	if u := s.unknown; len(u.cves) > 0 {
		a := Action{Kind: ActReviewUnknown, CVEs: u.cves, Rules: u.ruleList(),
			Summary: fmt.Sprintf("%d CVEs cannot be judged for this kernel: add a feed that covers %s kernels (its OSV advisories or changelog); until then they count as at risk", len(u.cves), h.Distro)}
		if len(s.unknownPatchOrder) > 0 {
			var named []string
			n := 0
			for _, p := range s.unknownPatchOrder {
				named = append(named, fmt.Sprintf("%s (%s)", p, strings.Join(s.unknownPatches[p], ", ")))
				n += len(s.unknownPatches[p])
			}
			a.Note = fmt.Sprintf("live patches for this exact build name %d of them and can be applied meanwhile: %s", n, strings.Join(named, "; "))
		}
		acts = append(acts, a)
	}
	markOverdue(acts, pl.now)
	return acts
}

// markOverdue notes on every action whose deadline is already behind now
// that it is overdue, not only the emergency reboot: "apply now (deadline
// last week)" reads as if there were time left.
func markOverdue(acts []Action, now time.Time) {
	for i := range acts {
		a := &acts[i]
		if a.Deadline == nil || !a.Deadline.Before(now) || strings.HasPrefix(a.Note, "overdue") {
			continue
		}
		note := "overdue: the deadline passed " + a.Deadline.Format(time.RFC3339)
		if a.Note != "" {
			note += "; " + a.Note
		}
		a.Note = note
	}
}

// urgentDeadline is when an urgent CVE must be dealt with: the urgent rule's
// deadline, or now when its clock has not started (no dated remedy).
func (pl *planner) urgentDeadline(f *vuln.Finding, r *Rule) *time.Time {
	if since, ok := pl.clock(f, r); ok {
		return tp(since.Add(time.Duration(r.Within)))
	}
	return tp(pl.now)
}

func (pl *planner) windowReboot(target string, cves, rules []string, deadline *time.Time, slot *Slot) Action {
	a := Action{Kind: ActReboot, Kernel: target, CVEs: cves, Rules: rules, Deadline: deadline}
	switch {
	case slot != nil:
		a.Window = slot
		a.Summary = fmt.Sprintf("reboot into %s in window %s (%s to %s)", target, slot.Window, slot.Start.Format(time.RFC3339), slot.End.Format(time.RFC3339))
		if deadline != nil && slot.Start.After(*deadline) {
			a.Note = fmt.Sprintf("the next window opens after the deadline: reboot before %s", deadline.Format(time.RFC3339))
		}
	case deadline != nil:
		a.Summary = fmt.Sprintf("reboot into %s before %s (no maintenance window for this host)", target, deadline.Format(time.RFC3339))
	default:
		a.Summary = fmt.Sprintf("reboot into %s at the next opportunity (no maintenance window for this host)", target)
	}
	return a
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// hostActions adds what comes from the host's own inventory to the shared
// CVE actions: reboot reasons, services to restart, old kernels to remove.
func (pl *planner) hostActions(inv *inventory.Inventory, shared []Action, slot *Slot) []Action {
	// What the host adds, worked out first: hosts that add the same to
	// the same shared actions share one list (hosts of one situation
	// mostly do), which must not be modified.
	var reasons []string
	for _, r := range inv.Reboot.Reasons {
		reasons = append(reasons, "inventory:"+r.Code)
	}
	target := inv.NewestKernel
	if target == "" {
		target = inv.Kernel.Release
	}
	var units []string
	if len(inv.StaleProcesses) > 0 {
		seen := map[string]bool{}
		for _, p := range inv.StaleProcesses {
			u := p.Unit
			if u == "" || strings.HasSuffix(u, ".scope") {
				u = fmt.Sprintf("pid %d (%s)", p.PID, p.Comm)
			}
			if !seen[u] {
				seen[u] = true
				units = append(units, u)
			}
		}
		sort.Strings(units)
	}
	rm := oldKernels(inv, pl.policy.FallbackKernels)
	boot := -1
	if b := inv.Boot; b.TotalBytes > 0 && len(rm) > 0 {
		boot = int(b.UsedBytes * 100 / b.TotalBytes)
	}
	var key strings.Builder
	fmt.Fprintf(&key, "%p/%d %p %q %q %q %q %d", shared, len(shared), slot, reasons, target, units, rm, boot)
	pl.mu.Lock()
	acts, ok := pl.hostActs[key.String()]
	pl.mu.Unlock()
	if ok {
		return acts
	}
	acts = append([]Action(nil), shared...)
	rebootIdx := -1
	emergency := false
	for i, a := range acts {
		if a.Kind == ActReboot || a.Kind == ActEmergencyReboot {
			rebootIdx = i
			emergency = a.Kind == ActEmergencyReboot
		}
	}
	if len(reasons) > 0 {
		if rebootIdx >= 0 {
			a := acts[rebootIdx]
			a.Rules = append(append([]string(nil), a.Rules...), reasons...)
			acts[rebootIdx] = a
		} else {
			a := pl.windowReboot(target, nil, reasons, nil, slot)
			acts = append(acts, a)
		}
	}
	if len(units) > 0 {
		a := Action{Kind: ActRestartServices, Services: units, Rules: []string{"inventory:stale-libraries"},
			Summary: "restart " + strings.Join(units, ", ") + ": they still map deleted or replaced libraries (a restart, not a reboot, clears this)"}
		if emergency {
			a.Note = "the emergency reboot restarts them"
		}
		acts = append(acts, a)
	}
	if len(rm) > 0 {
		a := Action{Kind: ActRemoveKernels, Packages: rm, Rules: []string{"inventory:old-kernels"},
			Summary: fmt.Sprintf("remove %s (keeping the running, the newest and %d fallback kernel(s))", strings.Join(rm, ", "), pl.policy.FallbackKernels)}
		if boot >= 0 {
			a.Note = fmt.Sprintf("/boot is %d%% full", boot)
		}
		acts = append(acts, a)
	}
	if acts == nil {
		acts = []Action{}
	}
	pl.mu.Lock()
	pl.hostActs[key.String()] = acts
	pl.mu.Unlock()
	return acts
}

// oldKernels lists the kernel packages to remove: all but the running one,
// the newest one and the newest `fallback` others.
func oldKernels(inv *inventory.Inventory, fallback int) []string {
	pkgs := inv.KernelPackages // oldest first
	keep := map[string]bool{inv.Kernel.Release: true, inv.NewestKernel: true}
	left := fallback
	for i := len(pkgs) - 1; i >= 0 && left > 0; i-- {
		if !keep[pkgs[i].Release] {
			keep[pkgs[i].Release] = true
			left--
		}
	}
	var out []string
	for _, p := range pkgs {
		if !keep[p.Release] {
			out = append(out, p.Name+" "+p.Version)
		}
	}
	return out
}
