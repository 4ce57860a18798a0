package vuln

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Vuln is one CVE (or, for an advisory that names none, the advisory) with
// everything the feeds said about it.
type Vuln struct {
	ID        string
	Title     string
	Published time.Time // earliest publication date any feed gave; zero when none did
	Scores    []Score
	Severity  Severity
	Urgency   string    // a distribution's urgency, used when there is no score
	Upstream  *Upstream // kernel CNA ranges; nil when unknown
	FixCommit string
	Sources   []string // feed kinds that named it
	// Unreadable says why a feed's record of it was skipped (ParseFeed):
	// its judgement then rests on the other feeds, or is unknown.
	Unreadable string
}

// DB is the indexed union of the loaded feeds. It is read-only once built
// and safe for concurrent use.
type DB struct {
	Vulns   []*Vuln // sorted by ID
	byID    map[string]int32
	tracks  map[trackKey]*Track
	Patches []LivePatch // the live patch catalog
	Feeds   []FeedInfo

	memo sync.Map // exposure key → *Exposure
}

// Lookup returns the vulnerability with id, or nil.
func (db *DB) Lookup(id string) *Vuln {
	if i, ok := db.byID[id]; ok {
		return db.Vulns[i]
	}
	return nil
}

type trackKey struct{ distro, release, pkg string }

func (k trackKey) String() string {
	s := k.distro
	if k.release != "" {
		s += ":" + k.release
	}
	return s + "/" + k.pkg
}

// Track is a distribution's kernel package in one release ("Debian 12,
// linux"): the versions it released and, per vulnerability, the ranges of
// its versions that are affected.
type Track struct {
	Key      string
	Scheme   Scheme
	Sources  []string
	branches map[Branch]bool // upstream branches the track's data covers; nil: any version
	// linear: the track's versions are one line of uploads across upstream
	// branches (Debian unstable moves from branch to branch and keeps no
	// old one), so a later upload of any branch is an upgrade for every
	// host of the track.
	linear   bool
	versions []trackVersion // known versions, ascending
	entries  [][]ordRange   // by vuln index
	ordMu    sync.Mutex
	ordMemo  map[string]int32
}

type trackVersion struct {
	version  string
	date     time.Time // release date when known
	upstream KernelVersion
	released bool // a published package (not only named in a range)
}

// ordRange is an affected range [intro, fixed) or [intro, last] in ordinals
// of the track's versions (see Track.ord). -1 means "no bound".
type ordRange struct {
	intro, fixed, last int32
	date               time.Time // when the fix was released
	source             string
}

// ord maps a version to an ordinal: the i-th known version is 2i+2, a
// version between known ones gets the odd number between them, and "0"
// (the beginning) is 0. Ordinals compare as versions do.
func (t *Track) ord(v string) (int32, error) {
	if v == "0" {
		return 0, nil
	}
	t.ordMu.Lock()
	o, ok := t.ordMemo[v]
	t.ordMu.Unlock()
	if ok {
		return o, nil
	}
	if err := ValidateVersion(t.Scheme, v); err != nil {
		return 0, err
	}
	var cmpErr error
	i := sort.Search(len(t.versions), func(i int) bool {
		c, err := CompareVersions(t.Scheme, t.versions[i].version, v)
		if err != nil {
			cmpErr = err
		}
		return c >= 0
	})
	if cmpErr != nil {
		return 0, cmpErr
	}
	if i < len(t.versions) {
		if c, _ := CompareVersions(t.Scheme, t.versions[i].version, v); c == 0 {
			o = int32(2*i + 2)
		} else {
			o = int32(2*i + 1)
		}
	} else {
		o = int32(2*i + 1)
	}
	t.ordMu.Lock()
	t.ordMemo[v] = o
	t.ordMu.Unlock()
	return o, nil
}

// versionAt returns the known version with ordinal o.
func (t *Track) versionAt(o int32) trackVersion {
	if o < 2 || o%2 != 0 || int(o/2-1) >= len(t.versions) {
		return trackVersion{}
	}
	return t.versions[o/2-1]
}

// covers tells whether the track's data speaks for upstream version u.
func (t *Track) covers(u KernelVersion) bool {
	if t.branches == nil {
		return true
	}
	return !u.IsZero() && t.branches[u.Branch()]
}

// firstReleasedFixing returns the first released version after upstream
// version u that carries the fix of a CVE with upstream ranges up whose fix
// in u's branch is fix (zero when that branch has none): a version of that
// branch at least fix, or, on a linear track, a version of a later branch
// that the ranges say is fixed or not affected.
func (t *Track) firstReleasedFixing(up *Upstream, u, fix KernelVersion) (trackVersion, bool) {
	for _, v := range t.versions {
		if !v.released || v.upstream.IsZero() || v.upstream.Compare(u) <= 0 {
			continue
		}
		if !fix.IsZero() && v.upstream.Branch() == fix.Branch() && v.upstream.Compare(fix) >= 0 {
			return v, true
		}
		if t.linear && v.upstream.Branch().Compare(u.Branch()) > 0 {
			if st, _ := up.Status(v.upstream); st != UpstreamAffected {
				return v, true
			}
		}
	}
	return trackVersion{}, false
}

// listsUploads tells whether the track knows every released version (a
// changelog lists every upload; OSV names only the versions that fix
// something), so that "no version carries the fix" is the data's word.
func (t *Track) listsUploads() bool {
	for _, s := range t.Sources {
		if s == "debian-changelog" {
			return true
		}
	}
	return false
}

// firstReleasedWithUpstream returns the first released version whose
// upstream version is at least u: the distribution package that carries an
// upstream stable fix.
func (t *Track) firstReleasedWithUpstream(u KernelVersion) (trackVersion, bool) {
	for _, v := range t.versions {
		if v.released && !v.upstream.IsZero() && v.upstream.Branch() == u.Branch() && v.upstream.Compare(u) >= 0 {
			return v, true
		}
	}
	return trackVersion{}, false
}

// Newest returns the newest released version of the track.
func (t *Track) Newest() string {
	for i := len(t.versions) - 1; i >= 0; i-- {
		if t.versions[i].released {
			return t.versions[i].version
		}
	}
	return ""
}

// trackFor returns the track of a host, or nil. A Debian testing or
// unstable host (release "unstable") takes the unstable changelog, else the
// one of the release its os-release names (testing's kernels are uploads to
// unstable, listed in that release's changelog too; its upstream branches
// keep a kernel of another line out).
func (db *DB) trackFor(h *Host) *Track {
	if t := db.tracks[trackKey{h.osvName, h.Release, h.Package}]; t != nil {
		return t
	}
	if h.Release == "unstable" && h.osvName == "Debian" {
		if r, ok := debianCodenames[h.Codename]; ok {
			if t := db.tracks[trackKey{h.osvName, r, h.Package}]; t != nil {
				return t
			}
		}
	}
	if major, _, ok := strings.Cut(h.Release, "."); ok {
		if t := db.tracks[trackKey{h.osvName, major, h.Package}]; t != nil {
			return t
		}
	}
	return db.tracks[trackKey{h.osvName, "", h.Package}]
}

// Tracks lists the tracks' names, for reports.
func (db *DB) Tracks() []string {
	var out []string
	for k := range db.tracks {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

func (db *DB) String() string {
	return fmt.Sprintf("%d vulnerabilities, %d tracks, %d live patches", len(db.Vulns), len(db.tracks), len(db.Patches))
}
