package server

import (
	"fmt"
	"regexp"
	"slices"
	"sort"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/vuln"
)

// kernelIndex is every kernel build the fleet's inventories reported
// installed or running: release -> package version (the newest seen). It
// is livePlan.builds, kept as inventories come (addBuilds), read under
// the live plan's lock.
type kernelIndex struct {
	version map[string]string
	// memo is upgrade's answer by running kernel and upgrade: the hosts
	// of a group share both.
	memo map[string]resolved
}

type resolved struct {
	up     *upgradeTo
	reason string
}

// fleetKernels is lp's index. Callers hold lp.mu.
func fleetKernels(lp *livePlan) *kernelIndex {
	return &kernelIndex{version: lp.builds, memo: map[string]resolved{}}
}

// addBuilds adds inv's kernel builds to builds and reports whether it
// learnt one.
func addBuilds(builds map[string]string, inv *inventory.Inventory) bool {
	if inv == nil || inv.OS.Family != "deb" {
		return false
	}
	changed := false
	add := func(release, version string) {
		if release == "" || version == "" {
			return
		}
		if old, ok := builds[release]; ok {
			if c, err := vuln.CompareVersions(vuln.SchemeDeb, version, old); err != nil || c <= 0 {
				return
			}
		}
		builds[release], changed = version, true
	}
	add(inv.Kernel.Release, inv.Kernel.PackageVersion)
	for _, p := range inv.KernelPackages {
		add(p.Release, p.Version)
	}
	return changed
}

// debianRelease splits a Debian kernel release: 6.1.0-56-amd64 is
// upstream 6.1.0, ABI 56, flavour amd64.
var debianRelease = regexp.MustCompile(`^(\d+\.\d+\.\d+)-(\d+)-([a-z0-9][a-z0-9-]*)$`)

// upgradeTo is the kernel a reboot action installs first.
type upgradeTo struct {
	release, version string
	packages         []string // the image and the metapackage
}

// upgrade resolves the plan's package upgrade (up: "upgrade
// linux-image-amd64 to 6.1.192-2 or later") for a host running inv's
// kernel to a release: the newest build of the same upstream series and
// flavour at that version or later that the fleet reports. It answers
// why not when it cannot.
func (ki *kernelIndex) upgrade(inv *inventory.Inventory, up *policy.Action) (*upgradeTo, string) {
	key := inv.OS.Family + " " + inv.OS.ID + " " + inv.Kernel.Release
	if up != nil {
		key += " " + up.Package + " " + up.Version
	}
	if r, ok := ki.memo[key]; ok {
		return r.up, r.reason
	}
	u, reason := ki.resolve(inv, up)
	ki.memo[key] = resolved{u, reason}
	return u, reason
}

func (ki *kernelIndex) resolve(inv *inventory.Inventory, up *policy.Action) (*upgradeTo, string) {
	if up == nil {
		return nil, "the kernel to boot is not installed yet and the plan names no package upgrade: start a kernel rollout of its release (stent fleet kernels rollout)"
	}
	how := fmt.Sprintf("upgrade %s to %s or later on these hosts, or start a kernel rollout of its release (stent fleet kernels rollout --release R --version V)", up.Package, up.Version)
	m := debianRelease.FindStringSubmatch(inv.Kernel.Release)
	if inv.OS.Family != "deb" || m == nil {
		return nil, fmt.Sprintf("the server resolves kernel upgrades for Debian-style releases only (this host runs %s on %s): %s", inv.Kernel.Release, inv.OS.ID, how)
	}
	var best *upgradeTo
	for release, version := range ki.version {
		c := debianRelease.FindStringSubmatch(release)
		if c == nil || c[1] != m[1] || c[3] != m[3] {
			continue
		}
		if cmp, err := vuln.CompareVersions(vuln.SchemeDeb, version, up.Version); err != nil || cmp < 0 {
			continue
		}
		if best != nil {
			if cmp, _ := vuln.CompareVersions(vuln.SchemeDeb, version, best.version); cmp < 0 || cmp == 0 && release < best.release {
				continue
			}
		}
		best = &upgradeTo{release: release, version: version}
	}
	if best == nil {
		return nil, fmt.Sprintf("no host of the fleet reports a kernel of %s %s or later (flavour %s), so the release to install is not known: %s", up.Package, up.Version, m[3], how)
	}
	best.packages = []string{"linux-image-" + best.release}
	if up.Package != "" && up.Package != best.packages[0] {
		best.packages = append(best.packages, up.Package)
	}
	return best, ""
}

// inKernelRollout splits hosts into those a running or paused kernel
// rollout of release already takes (refs: those rollouts) and the rest.
func (s *Server) inKernelRollout(release string, hosts []string) (refs, joined, rest []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, id := range hosts {
		ref := ""
		for _, k := range s.rb.krefs[id] {
			if k.r.Release != release || (k.r.State != api.RolloutRunning && k.r.State != api.RolloutPaused) {
				continue
			}
			switch k.State {
			case api.KernelInstalling, api.KernelInstalled, api.KernelRebooting, api.KernelPending:
				ref = k.r.ID
			}
		}
		if ref == "" {
			rest = append(rest, id)
			continue
		}
		joined = append(joined, id)
		if !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	sort.Strings(refs)
	return refs, joined, rest
}
