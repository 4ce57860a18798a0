package vuln

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// builder collects parsed feeds and indexes them into a DB.
type builder struct {
	vulns   map[string]*Vuln
	tracks  map[trackKey]*trackBuild
	nvd     map[string]*NVDRecord
	patches []LivePatch
	feeds   []FeedInfo
}

type trackBuild struct {
	key       trackKey
	scheme    Scheme
	branches  map[Branch]bool
	anyBranch bool
	linear    bool
	versions  map[string]*trackVersion
	ranges    map[string][]rawRange
	sources   map[string]bool
}

type rawRange struct {
	intro, fixed, last string // "" for no bound
	date               time.Time
	source             string
}

func newBuilder() *builder {
	return &builder{vulns: map[string]*Vuln{}, tracks: map[trackKey]*trackBuild{}, nvd: map[string]*NVDRecord{}}
}

func (b *builder) vuln(id, source string) *Vuln {
	v := b.vulns[id]
	if v == nil {
		v = &Vuln{ID: id}
		b.vulns[id] = v
	}
	for _, s := range v.Sources {
		if s == source {
			return v
		}
	}
	v.Sources = append(v.Sources, source)
	return v
}

func (b *builder) track(k trackKey, s Scheme) *trackBuild {
	t := b.tracks[k]
	if t == nil {
		t = &trackBuild{key: k, scheme: s, branches: map[Branch]bool{}, versions: map[string]*trackVersion{}, ranges: map[string][]rawRange{}, sources: map[string]bool{}}
		b.tracks[k] = t
	}
	return t
}

func (t *trackBuild) version(v string) *trackVersion {
	tv := t.versions[v]
	if tv == nil {
		tv = &trackVersion{version: v}
		t.versions[v] = tv
	}
	return tv
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// ubuntuCodenames maps Ubuntu codenames to releases, for Ubuntu changelogs.
var ubuntuCodenames = map[string]string{
	"focal": "20.04", "jammy": "22.04", "noble": "24.04", "oracular": "24.10", "plucky": "25.04", "questing": "25.10",
}

func (b *builder) add(pf *parsedFeed) error {
	for _, cl := range pf.changelogs {
		if err := b.addChangelog(cl); err != nil {
			return err
		}
	}
	for _, r := range pf.unreadable {
		v := b.vuln(r.ID, "cna")
		v.Unreadable = r.Unreadable
	}
	for _, r := range pf.cna {
		v := b.vuln(r.ID, "cna")
		if r.Title != "" {
			v.Title = r.Title
		}
		v.Upstream = r.Upstream
		v.FixCommit = r.FixCommit
		v.Scores = append(v.Scores, r.Scores...)
		v.Published = earliest(v.Published, r.Published)
	}
	for _, r := range pf.osv {
		if err := b.addOSV(r); err != nil {
			return err
		}
	}
	for _, r := range pf.nvd {
		if _, dup := b.nvd[r.ID]; !dup {
			b.nvd[r.ID] = r
		}
	}
	for _, p := range pf.patches {
		b.patches = append(b.patches, p)
		for _, id := range p.CVEs {
			b.vuln(id, "livepatch")
		}
	}
	return nil
}

// addChangelog turns a Debian changelog into a track: every CVE an upload
// names is fixed from that upload on. A CVE named by several uploads (a fix
// and a follow-up fix, or a fix, a revert and a re-fix) counts as fixed
// only from the last of them: that errs towards "exposed", never towards a
// wrong "fixed". Uploads to experimental are a side line and are used only
// when no other upload names the CVE.
func (b *builder) addChangelog(cl *DebianChangelog) error {
	var ups []*Upload
	for i := range cl.Uploads {
		if cl.Uploads[i].Source == "linux" {
			ups = append(ups, &cl.Uploads[i])
		}
	}
	if len(ups) == 0 {
		return &ParseError{File: cl.File, Err: fmt.Errorf("no uploads of the linux source package")}
	}
	newest := ups[0]
	code := suiteCodename(newest.Distribution)
	if code == "sid" {
		code = "unstable"
	}
	distro, rel := "Debian", debianCodenames[code]
	if r, ok := ubuntuCodenames[code]; ok {
		distro, rel = "Ubuntu", r
	}
	if rel == "" {
		rel = code
	}
	t := b.track(trackKey{distro, rel, "linux"}, SchemeDeb)
	t.sources["debian-changelog"] = true
	// Unstable is one line of uploads that moves from branch to branch: a
	// host of it runs one of them (or a newer one), whatever its branch.
	// A release's changelog speaks only for the branch of its newest
	// upload; an older one there is history, and a kernel of another
	// branch is a backport the changelog does not list.
	t.linear = distro == "Debian" && rel == "unstable"
	if distro == "Debian" {
		nu, err := UpstreamOfDebian(newest.Version)
		if err != nil {
			return &ParseError{File: cl.File, Line: newest.Line, Field: "version", Err: err}
		}
		t.branches[nu.Branch()] = true
	} else {
		t.anyBranch = true
	}
	listings := map[string][]*Upload{}
	var order []string
	for _, u := range ups {
		tv := t.version(u.Version)
		tv.released = tv.released || suiteCodename(u.Distribution) != "experimental"
		tv.date = earliest(tv.date, u.Date)
		if distro == "Debian" {
			up, err := UpstreamOfDebian(u.Version)
			if err != nil {
				return &ParseError{File: cl.File, Line: u.Line, Field: "version", Err: err}
			}
			tv.upstream = up
			if t.linear && tv.released {
				t.branches[up.Branch()] = true
			}
		}
		for _, id := range u.CVEs {
			if listings[id] == nil {
				order = append(order, id)
			}
			listings[id] = append(listings[id], u)
		}
	}
	for _, id := range order {
		ls := listings[id]
		var main []*Upload
		for _, u := range ls {
			if suiteCodename(u.Distribution) != "experimental" {
				main = append(main, u)
			}
		}
		if len(main) > 0 {
			ls = main
		}
		fix := ls[0]
		for _, u := range ls[1:] {
			if c, _ := CompareVersions(SchemeDeb, u.Version, fix.Version); c > 0 {
				fix = u
			}
		}
		t.ranges[id] = append(t.ranges[id], rawRange{intro: "0", fixed: fix.Version, date: fix.Date, source: "debian-changelog " + fix.Version})
		v := b.vuln(id, "debian-changelog")
		if v.Urgency == "" {
			v.Urgency = fix.Urgency
		}
	}
	return nil
}

// isKernelPackage tells whether an OSV package name is a kernel.
func isKernelPackage(name string) bool {
	return name == "linux" || name == "kernel" || strings.HasPrefix(name, "linux-") || strings.HasPrefix(name, "kernel-")
}

func (b *builder) addOSV(r *OSVRecord) error {
	if r.Withdrawn {
		return nil
	}
	ids := r.CVEs
	if len(ids) == 0 {
		ids = []string{r.ID}
	}
	for _, a := range r.Affected {
		if !isKernelPackage(a.Package) {
			continue
		}
		parts := strings.Split(a.Ecosystem, ":")
		var scheme Scheme
		name := ""
		for _, d := range distros {
			if strings.EqualFold(d.osvName, parts[0]) {
				scheme, name = d.scheme, d.osvName
			}
		}
		if scheme == "" {
			continue // an ecosystem Stent has no hosts of
		}
		rel := ""
		for _, p := range parts[1:] {
			if p != "" && p[0] >= '0' && p[0] <= '9' {
				rel = p
				break
			}
		}
		t := b.track(trackKey{name, rel, a.Package}, scheme)
		t.sources["osv"] = true
		date := r.Published
		if date.IsZero() {
			date = r.Modified
		}
		field := func(j, k int, kind string) string {
			return fmt.Sprintf("affected[%d].ranges[%d].events[%d].%s", a.Index, j, k, kind)
		}
		var ranges []rawRange
		for j, rg := range a.Ranges {
			if rg.Type != "ECOSYSTEM" {
				continue
			}
			open := ""
			isOpen := false
			for k, ev := range rg.Events {
				if ev.Version != "0" {
					if err := ValidateVersion(scheme, ev.Version); err != nil {
						return &ParseError{File: r.File, Field: field(j, k, ev.Kind), Err: err}
					}
					tv := t.version(ev.Version)
					if ev.Kind == "fixed" {
						tv.released = true
						tv.date = earliest(tv.date, date)
					}
					if name == "Debian" {
						if up, err := UpstreamOfDebian(ev.Version); err == nil && ev.Kind == "fixed" {
							tv.upstream = up
							t.branches[up.Branch()] = true
						}
					} else {
						t.anyBranch = true
					}
				}
				switch ev.Kind {
				case "introduced":
					if isOpen {
						ranges = append(ranges, rawRange{intro: open, date: date, source: "osv " + r.ID})
					}
					open, isOpen = ev.Version, true
				case "fixed", "last_affected":
					if !isOpen {
						return &ParseError{File: r.File, Field: field(j, k, ev.Kind), Err: fmt.Errorf("%s without an introduced event before it", ev.Kind)}
					}
					rr := rawRange{intro: open, date: date, source: "osv " + r.ID}
					if ev.Kind == "fixed" {
						rr.fixed = ev.Version
					} else {
						rr.last = ev.Version
					}
					ranges = append(ranges, rr)
					isOpen = false
				}
			}
			if isOpen {
				ranges = append(ranges, rawRange{intro: open, date: date, source: "osv " + r.ID})
			}
		}
		if len(a.Ranges) == 0 {
			for k, ver := range a.Versions {
				if err := ValidateVersion(scheme, ver); err != nil {
					return &ParseError{File: r.File, Field: fmt.Sprintf("affected[%d].versions[%d]", a.Index, k), Err: err}
				}
				t.version(ver)
				ranges = append(ranges, rawRange{intro: ver, last: ver, date: date, source: "osv " + r.ID})
			}
		}
		for _, id := range ids {
			t.ranges[id] = append(t.ranges[id], ranges...)
			v := b.vuln(id, "osv")
			if v.Urgency == "" {
				v.Urgency = a.Severity
			}
		}
	}
	for _, id := range ids {
		if v := b.vulns[id]; v != nil {
			v.Scores = append(v.Scores, r.Scores...)
			v.Published = earliest(v.Published, r.Published)
		}
	}
	return nil
}

func (b *builder) build() (*DB, error) {
	db := &DB{byID: map[string]int32{}, tracks: map[trackKey]*Track{}, Feeds: b.feeds}
	ids := make([]string, 0, len(b.vulns))
	for id := range b.vulns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i, id := range ids {
		v := b.vulns[id]
		if n := b.nvd[id]; n != nil {
			v.Scores = append(v.Scores, n.Scores...)
			v.Published = earliest(v.Published, n.Published)
			v.Sources = append(v.Sources, "nvd")
		}
		sortScores(v.Scores)
		v.Scores = dedupScores(v.Scores)
		v.Severity = chooseSeverity(v.Scores, v.Urgency)
		sort.Strings(v.Sources)
		db.Vulns = append(db.Vulns, v)
		db.byID[id] = int32(i)
	}
	for k, tb := range b.tracks {
		t := &Track{Key: k.String(), Scheme: tb.scheme, linear: tb.linear, ordMemo: map[string]int32{}}
		for s := range tb.sources {
			t.Sources = append(t.Sources, s)
		}
		sort.Strings(t.Sources)
		if !tb.anyBranch && len(tb.branches) > 0 {
			t.branches = tb.branches
		}
		for _, tv := range tb.versions {
			t.versions = append(t.versions, *tv)
		}
		var sortErr error
		sort.Slice(t.versions, func(i, j int) bool {
			c, err := CompareVersions(t.Scheme, t.versions[i].version, t.versions[j].version)
			if err != nil && sortErr == nil {
				sortErr = err
			}
			return c < 0
		})
		if sortErr != nil {
			return nil, fmt.Errorf("track %s: %w", t.Key, sortErr)
		}
		// Versions equal under the scheme ("1.0" and "1.0-0") share an ordinal.
		dedup := t.versions[:0]
		for _, tv := range t.versions {
			if n := len(dedup); n > 0 {
				if c, _ := CompareVersions(t.Scheme, dedup[n-1].version, tv.version); c == 0 {
					dedup[n-1].released = dedup[n-1].released || tv.released
					continue
				}
			}
			dedup = append(dedup, tv)
		}
		t.versions = dedup
		for i, tv := range t.versions {
			t.ordMemo[tv.version] = int32(2*i + 2)
		}
		t.entries = make([][]ordRange, len(db.Vulns))
		for id, rs := range tb.ranges {
			vi := db.byID[id]
			for _, r := range rs {
				or := ordRange{intro: 0, fixed: -1, last: -1, date: r.date, source: r.source}
				var err error
				if r.intro != "" {
					if or.intro, err = t.ord(r.intro); err != nil {
						return nil, fmt.Errorf("track %s: %s: %w", t.Key, id, err)
					}
				}
				if r.fixed != "" {
					if or.fixed, err = t.ord(r.fixed); err != nil {
						return nil, fmt.Errorf("track %s: %s: %w", t.Key, id, err)
					}
				}
				if r.last != "" {
					if or.last, err = t.ord(r.last); err != nil {
						return nil, fmt.Errorf("track %s: %s: %w", t.Key, id, err)
					}
				}
				t.entries[vi] = append(t.entries[vi], or)
			}
		}
		db.tracks[k] = t
	}
	db.Patches = b.patches
	sort.SliceStable(db.Patches, func(i, j int) bool { return db.Patches[i].Name < db.Patches[j].Name })
	return db, nil
}

func dedupScores(s []Score) []Score {
	out := s[:0]
	for i, sc := range s {
		if i > 0 && sc == s[i-1] {
			continue
		}
		out = append(out, sc)
	}
	return out
}
