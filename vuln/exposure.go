package vuln

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// State is the state of one CVE on one host.
type State string

const (
	FixedRunning   State = "fixed-running"   // the running kernel carries the fix
	FixedLivePatch State = "fixed-livepatch" // an applied live patch fixes it; the kernel update is still due
	FixedInstalled State = "fixed-installed" // an installed kernel carries the fix: reboot needed
	UpdateNeeded   State = "update-needed"   // a released package carries the fix: install it, then reboot
	NoFix          State = "no-fix"          // affected, and no released package fixes it yet
	NotAffected    State = "not-affected"    // the running kernel never carried the bug
	Unknown        State = "unknown"         // no feed speaks for this host's kernel: treated as exposed
)

// States lists the states in order from best to worst.
var States = []State{NotAffected, FixedRunning, FixedLivePatch, FixedInstalled, UpdateNeeded, NoFix, Unknown}

// Exposed tells whether the running kernel, live patches aside, lacks the fix.
func (s State) Exposed() bool { return s != FixedRunning && s != NotAffected }

// Finding is the state of one CVE on one host, with its evidence.
type Finding struct {
	CVE            string     `json:"cve"`
	State          State      `json:"state"`
	Severity       Severity   `json:"severity"`
	FixedIn        string     `json:"fixed_in,omitempty"`     // package version that carries the fix
	FixReleased    *time.Time `json:"fix_released,omitempty"` // when that package was released
	UpstreamFix    string     `json:"upstream_fix,omitempty"` // upstream stable release with the fix
	Kernel         string     `json:"kernel,omitempty"`       // installed kernel (release) that carries the fix
	LivePatch      string     `json:"live_patch,omitempty"`   // applied live patch that fixes it
	AvailablePatch string     `json:"available_live_patch,omitempty"`
	Published      *time.Time `json:"published,omitempty"`
	Evidence       string     `json:"evidence"`
}

// Resolved is a CVE the running kernel fixes, with when its fix was released.
type Resolved struct {
	CVE         string
	Level       Level
	FixReleased time.Time
}

// Exposure is the state of every known CVE on one host's kernel. Findings
// holds the CVEs whose fix the running kernel lacks (live patched ones
// included), most severe first; the others are only counted.
type Exposure struct {
	Track    string        `json:"track,omitempty"` // the distribution data used, "" when none
	Findings []Finding     `json:"findings"`
	Counts   map[State]int `json:"counts"`
	Resolved []Resolved    `json:"-"`
}

type verdictStatus int

const (
	vUnknown verdictStatus = iota
	vNotAffected
	vFixed
	vAffected
)

type verdict struct {
	status      verdictStatus
	fixVersion  string
	fixDate     time.Time
	upstreamFix KernelVersion
	evidence    string
	// unmapped: affected and fixed upstream, but no feed says which of the
	// distribution's packages carries the fix (state unknown, not no-fix).
	unmapped bool
}

// key identifies everything Evaluate's answer depends on, so hosts running
// the same kernel with the same installed kernel and live patches share one
// evaluation.
// Key identifies h's kernel situation: hosts with equal keys have the same
// exposure (Evaluate shares one between them), so a planner can group them.
func (h *Host) Key() string { return h.key() }

func (h *Host) key() string {
	var b strings.Builder
	b.Grow(128)
	for _, s := range []string{h.Distro, h.Release, h.Package, string(h.Scheme), h.Running.Release, h.Running.Version, h.Running.Upstream.String(), h.Newest.Release, h.Newest.Version, h.Newest.Upstream.String()} {
		b.WriteString(s)
		b.WriteByte('|')
	}
	if h.upstreamBased {
		b.WriteByte('u')
	}
	if len(h.Applied) > 0 {
		names := make([]string, 0, len(h.Applied))
		for _, p := range h.Applied {
			names = append(names, p.Name+"="+strings.Join(p.CVEs, ","))
		}
		sort.Strings(names)
		b.WriteString("|" + strings.Join(names, ";"))
	}
	return b.String()
}

// Evaluate tells the state of every CVE in the database on host h. Results
// are shared between hosts in the same situation and must not be modified.
func (db *DB) Evaluate(h Host) (*Exposure, error) {
	key := h.key()
	if e, ok := db.memo.Load(key); ok {
		return e.(*Exposure), nil
	}
	e, err := db.evaluate(&h)
	if err != nil {
		return nil, err
	}
	actual, _ := db.memo.LoadOrStore(key, e)
	return actual.(*Exposure), nil
}

func (db *DB) evaluate(h *Host) (*Exposure, error) {
	t := db.trackFor(h)
	var runOrd, newOrd int32
	if t != nil {
		var err error
		if runOrd, err = t.ord(h.Running.Version); err != nil {
			return nil, fmt.Errorf("running kernel: %w", err)
		}
		if newOrd, err = t.ord(h.Newest.Version); err != nil {
			return nil, fmt.Errorf("newest kernel: %w", err)
		}
	}
	e := &Exposure{Counts: map[State]int{}}
	if t != nil {
		e.Track = t.Key
	}
	applied := map[string]string{}
	for _, p := range h.Applied {
		for _, id := range p.CVEs {
			if applied[id] == "" {
				applied[id] = p.Name
			}
		}
	}
	available := map[string]string{}
	for i := range db.Patches {
		p := &db.Patches[i]
		if !p.Applies(h.Running.Release, h.Running.Version) {
			continue
		}
		for _, id := range p.CVEs {
			if available[id] == "" {
				available[id] = p.Name
			}
		}
	}
	sameBuild := h.Newest == h.Running
	for vi, v := range db.Vulns {
		// Most verdicts are fixed or not affected, and show no evidence.
		rv := db.verdictOf(h, t, vi, runOrd, h.Running.Upstream, false)
		switch rv.status {
		case vNotAffected:
			e.Counts[NotAffected]++
			continue
		case vFixed:
			e.Counts[FixedRunning]++
			if !rv.fixDate.IsZero() {
				e.Resolved = append(e.Resolved, Resolved{CVE: v.ID, Level: v.Severity.Level, FixReleased: rv.fixDate})
			}
			continue
		}
		f := Finding{CVE: v.ID, Severity: v.Severity, Evidence: rv.evidence}
		if !v.Published.IsZero() {
			p := v.Published
			f.Published = &p
		}
		if !rv.upstreamFix.IsZero() {
			f.UpstreamFix = rv.upstreamFix.String()
		}
		nv := rv
		if !sameBuild && rv.status == vAffected {
			nv = db.verdictOf(h, t, vi, newOrd, h.Newest.Upstream, false)
		}
		switch {
		case rv.status == vAffected && (nv.status == vFixed || nv.status == vNotAffected):
			f.State, f.Kernel, f.FixedIn = FixedInstalled, h.Newest.Release, h.Newest.Version
			f.Evidence += fmt.Sprintf("; installed kernel %s (%s) carries the fix", h.Newest.Release, h.Newest.Version)
			if !rv.fixDate.IsZero() {
				d := rv.fixDate
				f.FixReleased = &d
			}
		case rv.status == vAffected && rv.fixVersion != "":
			f.State, f.FixedIn = UpdateNeeded, rv.fixVersion
			if !rv.fixDate.IsZero() {
				d := rv.fixDate
				f.FixReleased = &d
			}
		case rv.status == vAffected && rv.unmapped:
			f.State = Unknown
		case rv.status == vAffected:
			f.State = NoFix
		default:
			f.State = Unknown
		}
		if name := applied[v.ID]; name != "" {
			f.State, f.LivePatch = FixedLivePatch, name
			f.Evidence += "; live patch " + name + " applied"
		} else if name := available[v.ID]; name != "" {
			f.AvailablePatch = name
		}
		e.Counts[f.State]++
		e.Findings = append(e.Findings, f)
	}
	// Kept as long as the database (Evaluate's memo) and the plans made
	// of it: without append's spare room.
	e.Findings = slices.Clip(append([]Finding(nil), e.Findings...))
	e.Resolved = slices.Clip(append([]Resolved(nil), e.Resolved...))
	sort.SliceStable(e.Findings, func(i, j int) bool {
		a, b := e.Findings[i], e.Findings[j]
		if a.Severity.Level != b.Severity.Level {
			return a.Severity.Level > b.Severity.Level
		}
		if a.Severity.Score != b.Severity.Score {
			return a.Severity.Score > b.Severity.Score
		}
		return a.CVE < b.CVE
	})
	return e, nil
}

// verdict tells what the feeds say about vulnerability vi in one kernel
// build (ord in track t, upstream version u). Distribution data wins over
// upstream data when it names the CVE: it says what the package carries.
func (db *DB) verdict(h *Host, t *Track, vi int, ord int32, u KernelVersion) verdict {
	return db.verdictOf(h, t, vi, ord, u, true)
}

// verdictOf is verdict; without why, a verdict of fixed or not affected
// comes without its evidence, which only a finding shows (most verdicts
// are these, and a kernel's whole database is judged per situation).
func (db *DB) verdictOf(h *Host, t *Track, vi int, ord int32, u KernelVersion, why bool) verdict {
	v := db.Vulns[vi]
	if t != nil && len(t.entries[vi]) > 0 && (t.branches == nil || t.covers(u)) {
		var out verdict
		affected, noFix := false, false
		var fixOrd, bestFixed int32 = -1, -1
		var fixDate time.Time
		src := ""
		for _, r := range t.entries[vi] {
			if ord < r.intro {
				continue
			}
			in := false
			switch {
			case r.fixed >= 0:
				in = ord < r.fixed
				if !in && r.fixed > bestFixed {
					bestFixed, fixDate, src = r.fixed, r.date, r.source
				}
			case r.last >= 0:
				in = ord <= r.last
			default:
				in = true
			}
			if !in {
				continue
			}
			affected = true
			if r.fixed < 0 {
				noFix = true
				src = r.source
			} else if r.fixed > fixOrd {
				fixOrd = r.fixed
				out.fixDate = r.date
				if !noFix {
					src = r.source
				}
			}
		}
		switch {
		case affected && noFix:
			out.status, out.evidence = vAffected, fmt.Sprintf("%s: affected, no fixed version", src)
		case affected:
			tv := t.versionAt(fixOrd)
			out.status, out.fixVersion = vAffected, tv.version
			out.evidence = fmt.Sprintf("%s: fixed in %s", src, tv.version)
		case bestFixed >= 0:
			out.status, out.fixDate = vFixed, fixDate
			if why {
				out.evidence = fmt.Sprintf("%s: fixed in %s", src, t.versionAt(bestFixed).version)
			}
		default:
			out.status = vNotAffected
			if why {
				out.evidence = t.Key + ": not affected"
			}
		}
		return out
	}
	if h.upstreamBased && !u.IsZero() && v.Upstream != nil {
		st, fix := v.Upstream.Status(u)
		switch st {
		case UpstreamNotAffected:
			out := verdict{status: vNotAffected}
			if why {
				out.evidence = fmt.Sprintf("kernel CNA (%s): %s not affected", v.Upstream.From, u)
			}
			return out
		case UpstreamFixed:
			out := verdict{status: vFixed, upstreamFix: fix}
			if why {
				out.evidence = fmt.Sprintf("kernel CNA (%s): fixed upstream in %s", v.Upstream.From, fix)
			}
			if t != nil && t.branches != nil {
				if tv, ok := t.firstReleasedWithUpstream(fix); ok {
					out.fixDate = tv.date
				}
			}
			return out
		}
		out := verdict{status: vAffected, upstreamFix: fix}
		// Which package carries an upstream fix is the distribution's data
		// to say: a track that covers this kernel's branch and, for "no
		// package carries it yet", lists every upload (a changelog).
		mapped := t != nil && t.branches != nil && t.covers(u)
		var tv trackVersion
		found := false
		if mapped {
			tv, found = t.firstReleasedFixing(v.Upstream, u, fix)
		}
		later, fixedLater := KernelVersion{}, false
		if fix.IsZero() {
			later, fixedLater = v.Upstream.FixedAfter(u.Branch())
		}
		src := fmt.Sprintf("kernel CNA (%s)", v.Upstream.From)
		switch {
		case found && fix.IsZero():
			out.fixVersion, out.fixDate = tv.version, tv.date
			out.evidence = fmt.Sprintf("%s: %s affected, no fix in the %s branch; %s (upstream %s) carries the fix", src, u, u.Branch(), tv.version, tv.upstream)
		case found:
			out.fixVersion, out.fixDate = tv.version, tv.date
			out.evidence = fmt.Sprintf("%s: fixed upstream in %s, first packaged in %s", src, fix, tv.version)
		case fix.IsZero() && !fixedLater:
			// Upstream has no fix for this branch or any later one.
			out.evidence = fmt.Sprintf("%s: %s affected, no fix upstream", src, u)
		case fix.IsZero() && mapped && t.listsUploads():
			// The changelog lists every upload of this branch; none
			// names the CVE and upstream stable has no fix for it.
			out.evidence = fmt.Sprintf("%s: %s affected, no fix in the %s branch (fixed upstream in %s); no %s upload names it", src, u, u.Branch(), later, t.Key)
			if t.linear {
				out.evidence = fmt.Sprintf("%s: %s affected, no fix in the %s branch, fixed upstream in %s, not yet in a %s package", src, u, u.Branch(), later, t.Key)
			}
		case fix.IsZero():
			// Upstream fixed it in a later branch only. Whether the
			// distribution backported that fix into its kernel of this
			// branch (Ubuntu, for one, maintains branches upstream has
			// left) is for its own data to say.
			out.unmapped, out.upstreamFix = true, later
			out.evidence = fmt.Sprintf("%s: %s affected, no fix in the %s branch, fixed upstream in %s; %s", src, u, u.Branch(), later, missingFeed(h, t, u))
		case mapped && t.listsUploads():
			out.evidence = fmt.Sprintf("%s: fixed upstream in %s, not yet in a %s package", src, fix, t.Key)
		default:
			// Fixed upstream, and nothing maps that fix to this
			// distribution's packages: "no released package fixes it"
			// would be a claim no feed made.
			out.unmapped = true
			out.evidence = fmt.Sprintf("%s: fixed upstream in %s; %s", src, fix, missingFeed(h, t, u))
		}
		return out
	}
	ev := "no feed covers this kernel"
	if t != nil && len(t.entries[vi]) > 0 {
		ev = fmt.Sprintf("%s does not cover upstream %s and the kernel CNA data does not apply", t.Key, u)
	} else if v.Upstream == nil && v.Unreadable != "" {
		ev = "its kernel CNA record could not be read: " + v.Unreadable
	} else if v.Upstream == nil && h.upstreamBased {
		ev = "not named by the distribution's data and no upstream version ranges"
	} else if !h.upstreamBased {
		ev = fmt.Sprintf("not named by %s data; upstream ranges do not apply to %s kernels", h.osvName, h.Distro)
	}
	return verdict{status: vUnknown, evidence: ev}
}

// missingFeed says, for a CVE fixed upstream, why no feed maps the fix to a
// package of host h (track t, nil when none; upstream version u) and which
// feed would.
func missingFeed(h *Host, t *Track, u KernelVersion) string {
	name := h.Name()
	add := "add an OSV feed for " + h.osvName
	if h.osvName == "Debian" {
		add = fmt.Sprintf("add the debian-changelog of %s's linux package or an OSV feed for %s", name, h.osvName)
	}
	switch {
	case t == nil:
		return fmt.Sprintf("no feed maps %s packages to fixes: %s", name, add)
	case t.branches == nil:
		return fmt.Sprintf("%s does not name it and has no upstream versions to map the fix to a package: %s", t.Key, add)
	case !t.covers(u):
		return fmt.Sprintf("%s covers upstream %s only, not %s (a kernel of another line, such as a backport): no feed maps its packages to fixes; add the changelog of the package it comes from", t.Key, branchList(t.branches), u.Branch())
	default:
		return fmt.Sprintf("%s names no package with it and, without a changelog, does not list every upload: %s", t.Key, add)
	}
}

func branchList(bs map[Branch]bool) string {
	var l []Branch
	for b := range bs {
		l = append(l, b)
	}
	sort.Slice(l, func(i, j int) bool { return l[i].Compare(l[j]) < 0 })
	var s []string
	for _, b := range l {
		s = append(s, b.String())
	}
	return strings.Join(s, ", ")
}
