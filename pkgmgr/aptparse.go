package pkgmgr

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	debversion "github.com/knqyf263/go-deb-version"
)

// dpkgFormat is the dpkg-query -W format whose output parseDpkgQuery reads.
const dpkgFormat = "${binary:Package}\\t${Version}\\t${db:Status-Abbrev}\\t${Depends}\\n"

// dpkgEntry is one line of dpkg-query -W -f=dpkgFormat.
type dpkgEntry struct {
	Name, Version, Status, Depends string
}

// present: dpkg knows the package as more than "not installed".
func (e dpkgEntry) present() bool { return len(e.Status) >= 2 && e.Status[1] != 'n' }

// installed: unpacked and configured, no error flag.
func (e dpkgEntry) installed() bool {
	return len(e.Status) >= 2 && e.Status[1] == 'i' && (len(e.Status) < 3 || e.Status[2] == ' ')
}

// parseDpkgQuery parses dpkg-query -W -f=dpkgFormat output.
func parseDpkgQuery(out []byte) ([]dpkgEntry, error) {
	var es []dpkgEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			return nil, fmt.Errorf("dpkg-query output line %d: want package, version and status separated by tabs, got %q", n, line)
		}
		e := dpkgEntry{Name: strings.TrimSpace(f[0]), Version: f[1], Status: f[2]}
		if len(f) > 3 {
			e.Depends = f[3]
		}
		es = append(es, e)
	}
	return es, sc.Err()
}

// dpkgSnapshot maps each fully installed package to its version.
func dpkgSnapshot(es []dpkgEntry) map[string]string {
	m := map[string]string{}
	for _, e := range es {
		if e.installed() {
			m[e.Name] = e.Version
		}
	}
	return m
}

// releaseRE matches a Debian/Ubuntu kernel release: upstream version, ABI
// number, flavour (6.1.0-57-amd64, 6.1.0-57-cloud-amd64, 5.15.0-91-generic).
var releaseRE = regexp.MustCompile(`^(\d+\.\d+(?:\.\d+)?)-(\d+)(?:\.\d+)?-([a-z0-9][a-z0-9-]*)$`)

// releaseFlavour returns the flavour of a Debian/Ubuntu release, or "".
func releaseFlavour(release string) string {
	m := releaseRE.FindStringSubmatch(release)
	if m == nil {
		return ""
	}
	return m[3]
}

// imageRelease returns the release of a kernel image package
// (linux-image-6.1.0-57-amd64, its -unsigned twin, Ubuntu's
// linux-image-unsigned-R), or false for anything else (metapackages, -dbg).
func imageRelease(pkg string) (string, bool) {
	r, ok := strings.CutPrefix(pkg, "linux-image-")
	if !ok {
		return "", false
	}
	r = strings.TrimPrefix(r, "unsigned-")
	if strings.HasSuffix(r, "-dbg") || strings.HasSuffix(r, "-dbgsym") {
		return "", false
	}
	r = strings.TrimSuffix(r, "-unsigned")
	if !releaseRE.MatchString(r) {
		return "", false
	}
	return r, true
}

// releasePackages are the package names that belong to one release.
func releasePackages(release string) []string {
	return []string{
		"linux-image-" + release,
		"linux-image-" + release + "-unsigned",
		"linux-image-unsigned-" + release,
		"linux-modules-" + release,
		"linux-modules-extra-" + release,
		"linux-headers-" + release,
	}
}

// dependsOnImage returns the first kernel image package (and its exact
// version, when given as "(= V)") in a Depends field.
func dependsOnImage(depends string) (pkg, version string) {
	for _, alt := range strings.Split(depends, ",") {
		for _, d := range strings.Split(alt, "|") {
			d = strings.TrimSpace(d)
			name, rest, _ := strings.Cut(d, " ")
			name = strings.TrimSuffix(name, ":any")
			if _, ok := imageRelease(name); !ok {
				continue
			}
			rest = strings.TrimSpace(rest)
			if v, ok := strings.CutPrefix(rest, "(="); ok {
				version = strings.TrimSpace(strings.TrimSuffix(v, ")"))
			}
			return name, version
		}
	}
	return "", ""
}

// parseStanzas parses deb822 paragraphs (apt-cache show): one map per
// paragraph, continuation lines joined with "\n".
func parseStanzas(out []byte) []map[string]string {
	var res []map[string]string
	cur := map[string]string{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			res = append(res, cur)
		}
		cur, last = map[string]string{}, ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				cur[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = k
			cur[k] = strings.TrimSpace(v)
		}
	}
	flush()
	return res
}

// installedSizeKiB reads Installed-Size (KiB) from apt-cache show output.
func installedSizeKiB(out []byte) (uint64, error) {
	st := parseStanzas(out)
	if len(st) == 0 {
		return 0, fmt.Errorf("apt-cache show: no package paragraph")
	}
	s, ok := st[0]["Installed-Size"]
	if !ok {
		return 0, fmt.Errorf("apt-cache show %s: no Installed-Size field", st[0]["Package"])
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("apt-cache show %s: Installed-Size %q: %w", st[0]["Package"], s, err)
	}
	return n, nil
}

// policyCandidate reads "Candidate:" (and "Installed:") of one package
// from apt-cache policy output; "(none)" is returned as "".
func policyCandidate(out []byte) (installed, candidate string) {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Installed:"); ok && installed == "" {
			installed = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Candidate:"); ok && candidate == "" {
			candidate = strings.TrimSpace(v)
		}
	}
	if installed == "(none)" {
		installed = ""
	}
	if candidate == "(none)" {
		candidate = ""
	}
	return installed, candidate
}

// parseLines returns the non-empty, trimmed lines of out (apt-mark
// showhold, kernel-pins).
func parseLines(out []byte) []string {
	var res []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			res = append(res, l)
		}
	}
	return res
}

// simRE matches apt-get -s action lines: "Inst name [old] (new ...)",
// "Remv name [old]", "Purg name [old]".
var simRE = regexp.MustCompile(`^(Inst|Remv|Purg) (\S+)(?: \[([^\]]*)\])?(?: \((\S+)[^)]*\))?`)

// parseAptSimulation returns the package changes an apt-get -s run prints.
func parseAptSimulation(out []byte) []Change {
	var res []Change
	for _, line := range strings.Split(string(out), "\n") {
		m := simRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		c := Change{Name: m[2], From: m[3]}
		if m[1] == "Inst" {
			c.To = m[4]
		}
		res = append(res, c)
	}
	sortChanges(res)
	return res
}

func sortChanges(cs []Change) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
}

// debCompare compares two Debian versions; unparsable ones compare as
// strings after parsable ones.
func debCompare(a, b string) int {
	va, ea := debversion.NewVersion(a)
	vb, eb := debversion.NewVersion(b)
	switch {
	case ea == nil && eb == nil:
		return va.Compare(vb)
	case ea == nil:
		return 1
	case eb == nil:
		return -1
	}
	return strings.Compare(a, b)
}

// aptKernelsFrom builds the kernel list from a dpkg-query snapshot.
func aptKernelsFrom(es []dpkgEntry, running string, held map[string]bool) []Kernel {
	byName := map[string]dpkgEntry{}
	for _, e := range es {
		byName[e.Name] = e
	}
	metaTargets := map[string]bool{}
	for _, e := range es {
		if !strings.HasPrefix(e.Name, "linux-image-") || !e.installed() {
			continue
		}
		if _, ok := imageRelease(e.Name); ok {
			continue
		}
		if pkg, _ := dependsOnImage(e.Depends); pkg != "" {
			metaTargets[pkg] = true
		}
	}
	seen := map[string]bool{}
	var ks []Kernel
	for _, e := range es {
		rel, ok := imageRelease(e.Name)
		if !ok || !e.present() || seen[rel] {
			continue
		}
		// The signed image is the kernel; its -unsigned twin only counts
		// when the signed one is not there.
		img, ok := byName["linux-image-"+rel]
		if !ok || !img.present() {
			img = e
		}
		seen[rel] = true
		k := Kernel{Release: rel, Package: img.Name, Version: img.Version, Status: "installed", Running: rel == running}
		if !img.installed() {
			k.Status = strings.TrimSpace(img.Status)
		}
		for _, p := range releasePackages(rel) {
			if pe, ok := byName[p]; ok && pe.present() {
				k.Packages = append(k.Packages, p)
				if held[p] {
					k.Held = true
				}
				if metaTargets[p] {
					k.MetaTarget = true
				}
			}
		}
		ks = append(ks, k)
	}
	sortKernels(ks, debCompare)
	return ks
}

// sortKernels orders kernels newest first by package version, then release.
func sortKernels(ks []Kernel, cmp func(a, b string) int) {
	sort.SliceStable(ks, func(i, j int) bool {
		if c := cmp(ks[i].Version, ks[j].Version); c != 0 {
			return c > 0
		}
		return ks[i].Release > ks[j].Release
	})
}
