package vuln

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/stent-dev/stent/inventory"
)

// distro is what Stent knows about a distribution's kernels.
type distro struct {
	osvName string // the OSV ecosystem name of its advisories
	scheme  Scheme
	pkg     string // its kernel source package
	// upstreamBased: its kernels follow upstream stable releases closely
	// enough that the kernel CNA's version ranges apply to the upstream
	// version they are built from. Enterprise kernels (RHEL, SLES, ...)
	// backport fixes into an old base version; for them only the
	// distribution's own advisories tell.
	upstreamBased bool
}

var distros = map[string]distro{
	"debian":        {"Debian", SchemeDeb, "linux", true},
	"ubuntu":        {"Ubuntu", SchemeDeb, "linux", true},
	"fedora":        {"Fedora", SchemeRPM, "kernel", true},
	"rhel":          {"Red Hat", SchemeRPM, "kernel", false},
	"centos":        {"CentOS", SchemeRPM, "kernel", false},
	"rocky":         {"Rocky Linux", SchemeRPM, "kernel", false},
	"almalinux":     {"AlmaLinux", SchemeRPM, "kernel", false},
	"ol":            {"Oracle Linux", SchemeRPM, "kernel", false},
	"amzn":          {"Amazon Linux", SchemeRPM, "kernel", false},
	"sles":          {"SUSE", SchemeRPM, "kernel-default", false},
	"opensuse-leap": {"openSUSE", SchemeRPM, "kernel-default", false},
}

// SupportedDistros lists the os-release IDs Stent plans for.
func SupportedDistros() []string {
	var ids []string
	for id := range distros {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// ErrUnknownDistro is returned for a host whose distribution Stent does not
// know: it cannot tell what that distribution's kernels fix.
var ErrUnknownDistro = errors.New("unknown distribution")

// Build is one kernel build on a host.
type Build struct {
	Release  string        // uname -r
	Version  string        // package version
	Upstream KernelVersion // zero when not known
}

// Host is what exposure needs to know about a host.
type Host struct {
	Distro   string // os-release ID
	Release  string // os-release VERSION_ID; without one, see releaseOf
	Codename string
	Package  string // kernel source package
	Scheme   Scheme
	Running  Build
	Newest   Build // the newest installed kernel; equal to Running when none is newer
	Applied  []AppliedPatch
	// upstreamBased: see distro.upstreamBased
	upstreamBased bool
	osvName       string
}

// AppliedPatch is a live patch applied to the running kernel.
type AppliedPatch struct {
	Name string
	CVEs []string
}

// HostFromInventory checks an inventory and takes what exposure needs.
func HostFromInventory(inv *inventory.Inventory) (Host, error) {
	d, ok := distros[inv.OS.ID]
	if !ok {
		return Host{}, fmt.Errorf("host %s: os.id %q: %w (supported: %s)", inv.Hostname, inv.OS.ID, ErrUnknownDistro, strings.Join(SupportedDistros(), ", "))
	}
	if string(d.scheme) != inv.OS.Family {
		return Host{}, fmt.Errorf("host %s: os.family %q does not match distribution %q (%s)", inv.Hostname, inv.OS.Family, inv.OS.ID, d.scheme)
	}
	h := Host{
		Distro: inv.OS.ID, Release: releaseOf(inv.OS), Codename: inv.OS.Codename,
		Package: d.pkg, Scheme: d.scheme, upstreamBased: d.upstreamBased, osvName: d.osvName,
	}
	if inv.Kernel.SourcePackage != "" {
		h.Package = inv.Kernel.SourcePackage
	}
	run, err := buildOf(h, inv.Kernel.Release, inv.Kernel.PackageVersion, inv.Kernel.Upstream)
	if err != nil {
		return Host{}, fmt.Errorf("host %s: kernel: %w", inv.Hostname, err)
	}
	h.Running, h.Newest = run, run
	if np := inv.NewestPackage(); np != nil && np.Release != inv.Kernel.Release {
		nb, err := buildOf(h, np.Release, np.Version, "")
		if err != nil {
			return Host{}, fmt.Errorf("host %s: kernel package %s: %w", inv.Hostname, np.Name, err)
		}
		if c, _ := CompareVersions(h.Scheme, nb.Version, run.Version); c > 0 {
			h.Newest = nb
		}
	} else if np != nil && np.Version != inv.Kernel.PackageVersion {
		// Same release, another build (a same-ABI rebuild): the newer
		// build is what the next boot runs.
		nb, err := buildOf(h, np.Release, np.Version, "")
		if err != nil {
			return Host{}, fmt.Errorf("host %s: kernel package %s: %w", inv.Hostname, np.Name, err)
		}
		if c, _ := CompareVersions(h.Scheme, nb.Version, run.Version); c > 0 {
			h.Newest = nb
		}
	}
	for _, lp := range inv.LivePatches {
		if !lp.Enabled {
			continue
		}
		h.Applied = append(h.Applied, AppliedPatch{Name: lp.Name, CVEs: lp.CVEs})
	}
	return h, nil
}

// releaseOf tells a host's release: os-release's VERSION_ID when there is
// one. Debian testing and unstable have none; their os-release names the
// next release ("VERSION_CODENAME=trixie", "PRETTY_NAME=\"Debian GNU/Linux
// trixie/sid\"") and cannot tell testing from unstable. Both run kernels of
// the one line of linux uploads to unstable (testing only gets what migrated
// from it), so such a host is "unstable"; see DB.trackFor for the changelogs
// that speak for it. A Debian codename alone maps to its release number.
func releaseOf(o inventory.OS) string {
	if o.VersionID != "" {
		return o.VersionID
	}
	if o.ID == "debian" {
		if o.Codename == "sid" || o.Codename == "unstable" || strings.HasSuffix(strings.TrimSpace(o.PrettyName), "/sid") {
			return "unstable"
		}
		if r, ok := debianCodenames[o.Codename]; ok {
			return r
		}
	}
	return o.Codename
}

// Name is the distribution and release for people: "Debian 12",
// "Ubuntu 24.04", "Debian unstable".
func (h *Host) Name() string {
	if h.Release == "" {
		return h.osvName
	}
	return h.osvName + " " + h.Release
}

func buildOf(h Host, release, version, upstream string) (Build, error) {
	b := Build{Release: release, Version: version}
	if err := ValidateVersion(h.Scheme, version); err != nil {
		return Build{}, fmt.Errorf("package version: %w", err)
	}
	if !h.upstreamBased {
		return b, nil
	}
	var err error
	switch {
	case upstream != "":
		b.Upstream, err = ParseKernelVersion(upstream)
	case h.Scheme == SchemeDeb && h.Distro == "debian":
		b.Upstream, err = UpstreamOfDebian(version)
	case h.Scheme == SchemeRPM:
		b.Upstream, err = UpstreamOfRelease(release)
	default:
		// Ubuntu's package version does not carry the upstream
		// version; without /proc/version_signature it is unknown.
	}
	if err != nil {
		return Build{}, err
	}
	return b, nil
}
