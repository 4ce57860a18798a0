package policy

import (
	"strings"

	"github.com/stent-dev/stent/vuln"
)

// The planner decides in two steps. classify puts each finding into
// buckets (apply the live patch now, emergency reboot, mitigate, reboot in
// the window, ...) from a handful of facts about it: a pure function,
// tested over every combination of those facts in decide_test.go. The
// actions (actions.go) then gather the findings of each bucket into one
// action with its package, kernel, window, deadline and wording.

// exceptScope is how far a live exception waives a finding, as far as the
// actions care.
type exceptScope uint8

const (
	exceptNone   exceptScope = iota // no live exception, or only for rules other than the urgent one
	exceptUrgent                    // the urgent rule is waived, not every rule
	exceptAll                       // every rule is waived: no action at all
)

func (e exceptScope) String() string {
	switch e {
	case exceptNone:
		return "none"
	case exceptUrgent:
		return "urgent-rule"
	case exceptAll:
		return "all-rules"
	}
	return "?"
}

// kernelFix is where a kernel carrying the fix is, for a finding that an
// applied live patch covers: the live patch buys time, the kernel still
// has to be updated.
type kernelFix uint8

const (
	fixNone      kernelFix = iota // no released package carries it
	fixReleased                   // a released package carries it (Finding.FixedIn), not installed
	fixInstalled                  // an installed kernel carries it (Finding.Kernel)
)

func (k kernelFix) String() string {
	switch k {
	case fixNone:
		return "none"
	case fixReleased:
		return "released"
	case fixInstalled:
		return "installed"
	}
	return "?"
}

// findingCase is everything that decides what to do about one finding.
type findingCase struct {
	State     vuln.State
	Urgent    bool // the policy's urgent rule covers the finding's severity
	Patch     bool // a live patch for this exact build names it (available, not applied)
	Exception exceptScope
	Fix       kernelFix // looked at for fixed-livepatch findings only
}

// bucket is a set of the things to do about a finding.
type bucket uint16

const (
	// By the urgent rule's deadline:
	bApplyPatch bucket = 1 << iota // apply the available live patch now
	bUpgradeNow                    // upgrade the kernel package now
	bEmergency                     // emergency reboot into the fixed kernel
	bMitigate                      // no remedy: mitigate and watch
	// By the finding's own (earliest rule) deadline:
	bUpgrade // upgrade the kernel package before the scheduled reboot
	bReboot  // reboot in the maintenance window
	// Without a deadline:
	bReview    // no feed judges it for this kernel: close the data gap
	bPatchNote // name the available live patch in the review's note
)

// bucketNames are the buckets' names, in bit order, for tests and errors.
var bucketNames = []string{"apply-patch", "upgrade-now", "emergency-reboot", "mitigate", "upgrade", "reboot", "review", "patch-note"}

// urgentBuckets are the buckets whose deadline is the urgent rule's.
const urgentBuckets = bApplyPatch | bUpgradeNow | bEmergency | bMitigate

func (b bucket) String() string {
	if b == 0 {
		return "none"
	}
	var names []string
	for i, n := range bucketNames {
		if b&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, "+")
}

// classify decides what to do about one finding: docs/policy.md's flow.
// Urgent and a live patch for this build: apply it now, and still take the
// kernel update at the next scheduled reboot. Urgent without one: an
// emergency reboot into the fixed kernel (upgrading first when it is not
// installed), or mitigation when no fix is released. Not urgent: upgrade
// and reboot in the window. A CVE no feed judges for this kernel is
// reviewed, unless it is urgent and a live patch covers it. A live patched
// CVE is never urgent (the patch is the urgent remedy), and its kernel
// update still follows in the window.
func classify(c findingCase) bucket {
	if c.Exception == exceptAll || !c.State.Exposed() {
		// Waived, or the running kernel carries the fix (or never had
		// the bug): nothing to do.
		return 0
	}
	urgent := c.Urgent && c.Exception != exceptUrgent && c.State != vuln.FixedLivePatch
	switch {
	case c.State == vuln.Unknown && !(urgent && c.Patch):
		// Nothing tells whether this kernel is affected: no action can
		// be chosen, only the data gap closed. A live patch for this
		// build that names the CVE is said in the note.
		if c.Patch {
			return bReview | bPatchNote
		}
		return bReview
	case urgent && c.Patch:
		switch c.State {
		case vuln.UpdateNeeded:
			return bApplyPatch | bUpgrade | bReboot
		case vuln.FixedInstalled:
			return bApplyPatch | bReboot
		}
		return bApplyPatch
	case urgent && c.State == vuln.FixedInstalled:
		return bEmergency
	case urgent && c.State == vuln.UpdateNeeded:
		return bUpgradeNow | bEmergency
	case urgent:
		return bMitigate
	case c.State == vuln.FixedLivePatch:
		switch c.Fix {
		case fixInstalled:
			return bReboot
		case fixReleased:
			return bUpgrade | bReboot
		}
		return 0
	case c.State == vuln.FixedInstalled:
		return bReboot
	case c.State == vuln.UpdateNeeded:
		return bUpgrade | bReboot
	}
	return 0
}

// caseOf reads the facts classify needs from a finding.
func caseOf(f *vuln.Finding, urgent *Rule, fully, exceptedUrgent bool) findingCase {
	c := findingCase{
		State:  f.State,
		Urgent: urgent != nil && urgent.covers(f.Severity),
		Patch:  f.AvailablePatch != "",
	}
	switch {
	case fully:
		c.Exception = exceptAll
	case exceptedUrgent:
		c.Exception = exceptUrgent
	}
	switch {
	case f.Kernel != "":
		c.Fix = fixInstalled
	case f.FixedIn != "":
		c.Fix = fixReleased
	}
	return c
}
