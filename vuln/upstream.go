package vuln

import "fmt"

// Upstream says which upstream kernel versions a CVE affects, branch by
// branch, as the kernel CNA publishes it: the versions that introduced the
// bug (a mainline release introduces it in that branch and every later one;
// a stable release only in its own branch, as a backport) and the versions
// that fixed it (a stable release fixes its branch from that release on; a
// mainline release fixes its branch and every later one).
type Upstream struct {
	Introduced []KernelVersion // 0.0 means "since the beginning"
	Fixed      []KernelVersion
	From       string // "dyad" or "json": which file it was read from
}

// UpstreamStatus is what Upstream says about one version.
type UpstreamStatus int

const (
	UpstreamNotAffected UpstreamStatus = iota // the branch never carried the bug, or v predates it
	UpstreamFixed                             // v carries the fix
	UpstreamAffected                          // v carries the bug and not the fix
)

func (s UpstreamStatus) String() string {
	return [...]string{"not-affected", "fixed", "affected"}[s]
}

// branchStart is the first version of a branch, before any release candidate.
func branchStart(b Branch) KernelVersion {
	return KernelVersion{Major: b.Major, Minor: b.Minor, Patch: b.Patch, RC: 1}
}

// Status tells whether upstream version v is affected; for an affected v,
// fix is the release of v's branch that fixes it (zero when the branch has
// no fix); for a fixed v, fix is the release that brought the fix.
func (u *Upstream) Status(v KernelVersion) (status UpstreamStatus, fix KernelVersion) {
	b := v.Branch()
	var intro, fixAt KernelVersion
	haveIntro, haveFix := false, false
	for _, a := range u.Introduced {
		var at KernelVersion
		switch {
		case a.IsMainline() && a.Branch().Compare(b) < 0:
			at = branchStart(b)
		case a.Branch() == b:
			at = a
		default:
			continue
		}
		if !haveIntro || at.Compare(intro) < 0 {
			intro, haveIntro = at, true
		}
	}
	for _, f := range u.Fixed {
		var at KernelVersion
		switch {
		case f.IsMainline() && f.Branch().Compare(b) < 0:
			at = branchStart(b)
		case f.Branch() == b:
			at = f
		default:
			continue
		}
		if !haveFix || at.Compare(fixAt) < 0 {
			fixAt, haveFix = at, true
		}
	}
	switch {
	case !haveIntro:
		return UpstreamNotAffected, KernelVersion{}
	case haveFix && fixAt.Compare(intro) <= 0:
		// Fixed no later than introduced: no release of this branch
		// carried the bug.
		return UpstreamNotAffected, KernelVersion{}
	case v.Compare(intro) < 0:
		return UpstreamNotAffected, KernelVersion{}
	case haveFix && v.Compare(fixAt) >= 0:
		return UpstreamFixed, fixAt
	case haveFix:
		return UpstreamAffected, fixAt
	}
	return UpstreamAffected, KernelVersion{}
}

// FixedAfter returns the earliest fix upstream released in a branch after
// b (a stable release of that branch, or a mainline release that fixes its
// branch and every later one): the fix a kernel of b lacks when b itself
// has none.
func (u *Upstream) FixedAfter(b Branch) (KernelVersion, bool) {
	var best KernelVersion
	ok := false
	for _, f := range u.Fixed {
		if f.Branch().Compare(b) > 0 && (!ok || f.Compare(best) < 0) {
			best, ok = f, true
		}
	}
	return best, ok
}

func (u *Upstream) String() string {
	return fmt.Sprintf("introduced %v fixed %v (%s)", u.Introduced, u.Fixed, u.From)
}
