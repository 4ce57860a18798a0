package vuln

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stent-dev/stent/bundle"
)

// FeedKind names a kind of feed.
type FeedKind string

const (
	FeedDebianChangelog FeedKind = "debian-changelog" // a Debian changelog or changelog.gz
	FeedCNA             FeedKind = "cna"              // a folder (or .tar.gz) in the kernel CNA's layout
	FeedOSV             FeedKind = "osv"              // an OSV file, folder or .zip export
	FeedNVD             FeedKind = "nvd"              // NVD CVE API 2.0 responses (file, folder or API URL)
	FeedLivePatch       FeedKind = "livepatch"        // live patch manifests or signed bundles (file or folder)
)

// FeedKinds lists the kinds Load reads.
var FeedKinds = []FeedKind{FeedDebianChangelog, FeedCNA, FeedOSV, FeedNVD, FeedLivePatch}

// FixFeedKinds are the kinds that say which kernels fix which CVE. NVD only
// scores CVEs and live patch manifests only say which builds can be patched:
// Load refuses a set of feeds without one of these, since every kernel
// would be "unknown" and every CVE without an action to take.
var FixFeedKinds = []FeedKind{FeedDebianChangelog, FeedCNA, FeedOSV}

// ErrNoFixFeed is returned (wrapped) by Load when no feed says which
// kernels fix which CVE.
var ErrNoFixFeed = errors.New("no feed says which kernels fix which CVE")

// FeedSpec is one feed to load: a kind and a path or an https URL.
type FeedSpec struct {
	Kind     FeedKind
	Location string
}

// ParseFeedSpec reads "KIND=PATH" or "KIND=https://...".
func ParseFeedSpec(s string) (FeedSpec, error) {
	k, loc, ok := strings.Cut(s, "=")
	if !ok || loc == "" {
		return FeedSpec{}, fmt.Errorf("feed %q: want KIND=PATH or KIND=https://URL", s)
	}
	for _, known := range FeedKinds {
		if FeedKind(k) == known {
			return FeedSpec{Kind: known, Location: loc}, nil
		}
	}
	names := make([]string, len(FeedKinds))
	for i, f := range FeedKinds {
		names[i] = string(f)
	}
	return FeedSpec{}, fmt.Errorf("feed %q: unknown kind %q (want one of %s)", s, k, strings.Join(names, ", "))
}

func (s FeedSpec) isURL() bool { return strings.Contains(s.Location, "://") }

// FeedInfo records what was loaded from a feed, for plans and reports.
type FeedInfo struct {
	Kind      FeedKind   `json:"kind"`
	Location  string     `json:"location"`
	Records   int        `json:"records"`
	Newest    string     `json:"newest,omitempty"` // the newest upload of a changelog
	FetchedAt *time.Time `json:"fetched_at,omitempty"`
	Stale     string     `json:"stale,omitempty"` // why a cached copy was used
	// Skipped counts records left out because they could not be read (a
	// cna record whose fields Stent cannot read); Warnings says why, one
	// line per record, the first MaxFeedWarnings of them. A feed that skips
	// more than MaxSkipped of its records fails the load instead.
	Skipped  int      `json:"skipped,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// MaxFeedWarnings is how many warnings FeedInfo.Warnings keeps; Skipped
// still counts them all.
const MaxFeedWarnings = 50

// MaxSkipped is how many of a feed's records may be skipped before the
// feed is refused as a whole: 10, or 1% of them when that is more. A few
// odd records in a third-party feed of thousands are left out and named;
// more than that means Stent does not understand the feed, and a plan that
// drops its records quietly would call exposed hosts clean.
func MaxSkipped(records int) int { return max(10, records/100) }

// LoadOptions configures Load.
type LoadOptions struct {
	Fetcher *Fetcher // for URLs; nil refuses URLs
	// Keys returns the trusted keys that the signed bundles (*.bundle,
	// *.stb) of a livepatch feed must verify under; it is called once, at
	// the first bundle. nil refuses bundles.
	Keys func() (*bundle.Keyring, error)
}

// once makes Keys load the keyring at most once.
func (o LoadOptions) once() LoadOptions {
	if o.Keys != nil {
		o.Keys = sync.OnceValues(o.Keys)
	}
	return o
}

// Load reads every feed and builds the database. It is all or nothing: the
// first feed that fails to load or parse fails the whole load (a cna feed
// may skip a few records it cannot read, see MaxSkipped; FeedInfo counts
// and names them).
func Load(ctx context.Context, specs []FeedSpec, opts LoadOptions) (*DB, error) {
	if len(specs) == 0 {
		return nil, errors.New("no feeds: give at least one --feed KIND=PATH")
	}
	if err := checkFixFeed(specs); err != nil {
		return nil, err
	}
	opts = opts.once()
	feeds := make([]*Feed, 0, len(specs))
	for _, spec := range specs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := LoadFeed(ctx, spec, opts)
		if err != nil {
			return nil, err
		}
		feeds = append(feeds, f)
	}
	return BuildDB(feeds)
}

// Feed is one feed, loaded and parsed: what BuildDB indexes, with others,
// into a DB. It is read-only, so one Feed may go into many builds.
type Feed struct {
	Spec FeedSpec
	Info FeedInfo // Records, Skipped and Warnings filled
	// Digest is the sha256 of the files the feed was parsed from (names
	// and bytes), in hex: two loads of the same content have the same one.
	Digest string
	pf     *parsedFeed
}

// LoadFeed reads and parses one feed, as Load does each of its feeds.
func LoadFeed(ctx context.Context, spec FeedSpec, opts LoadOptions) (*Feed, error) {
	f, err := loadFeedReusing(ctx, spec, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("feed %s=%s: %w", spec.Kind, spec.Location, err)
	}
	return f, nil
}

// loadFeedReusing is LoadFeed that takes prev's parse again instead of
// parsing the same download twice, when the feed is a URL whose cached
// copy is still prev's (the server answered 304 Not Modified).
// Its errors do not name the feed: LoadFeed's do.
func loadFeedReusing(ctx context.Context, spec FeedSpec, opts LoadOptions, prev *Feed) (*Feed, error) {
	pf, info, err := loadFeed(ctx, spec, opts, prev)
	if err != nil {
		return nil, err
	}
	info.Records = pf.records()
	info.Skipped = pf.skipped
	info.Warnings = pf.warnings
	if len(pf.changelogs) > 0 {
		info.Newest = pf.changelogs[0].Uploads[0].Version
	}
	return &Feed{Spec: spec, Info: info, Digest: pf.digest, pf: pf}, nil
}

// LivePatchFeed is a livepatch feed of patches known otherwise than from a
// file, such as the bundles published to stent-server; location names
// where they come from.
func LivePatchFeed(location string, patches []LivePatch) *Feed {
	pf := &parsedFeed{kind: FeedLivePatch, patches: append([]LivePatch(nil), patches...)}
	h := sha256.New()
	for _, p := range pf.patches {
		h.Write(mustJSON(p))
	}
	pf.digest = hex.EncodeToString(h.Sum(nil))
	spec := FeedSpec{Kind: FeedLivePatch, Location: location}
	return &Feed{Spec: spec, Info: FeedInfo{Kind: spec.Kind, Location: location, Records: len(pf.patches)}, Digest: pf.digest, pf: pf}
}

// BuildDB indexes loaded feeds into a DB. It refuses a set without a feed
// that says which kernels fix which CVE (ErrNoFixFeed), as Load does.
func BuildDB(feeds []*Feed) (*DB, error) {
	specs := make([]FeedSpec, len(feeds))
	for i, f := range feeds {
		specs[i] = f.Spec
	}
	if len(specs) == 0 {
		return nil, errors.New("no feeds: give at least one --feed KIND=PATH")
	}
	if err := checkFixFeed(specs); err != nil {
		return nil, err
	}
	b := newBuilder()
	for _, f := range feeds {
		if err := b.add(f.pf); err != nil {
			return nil, fmt.Errorf("feed %s=%s: %w", f.Spec.Kind, f.Spec.Location, err)
		}
		b.feeds = append(b.feeds, f.Info)
	}
	return b.build()
}

// checkFixFeed refuses specs without a feed of FixFeedKinds, before anything
// is read or downloaded.
func checkFixFeed(specs []FeedSpec) error {
	var given []string
	seen := map[FeedKind]bool{}
	for _, s := range specs {
		for _, k := range FixFeedKinds {
			if s.Kind == k {
				return nil
			}
		}
		if !seen[s.Kind] {
			seen[s.Kind] = true
			given = append(given, string(s.Kind))
		}
	}
	want := make([]string, len(FixFeedKinds))
	for i, k := range FixFeedKinds {
		want[i] = string(k)
	}
	return fmt.Errorf("%w: only %s given; add at least one --feed of kind %s", ErrNoFixFeed, strings.Join(given, " and "), strings.Join(want, ", "))
}

// parsedFeed is one feed, parsed.
type parsedFeed struct {
	kind       FeedKind
	digest     string // see Feed.Digest
	changelogs []*DebianChangelog
	cna        []*CNARecord
	osv        []*OSVRecord
	nvd        []*NVDRecord
	patches    []LivePatch

	skipped  int      // records left out, see FeedInfo.Skipped
	warnings []string // the first MaxFeedWarnings reasons
	// unreadable stands for the cna records that were skipped: their CVE
	// (named by the file) is known, with no ranges, so that no host is
	// judged clean of it for want of the record.
	unreadable []*CNARecord
}

// skip leaves one record out, for reason err.
func (p *parsedFeed) skip(err error) {
	p.skipped++
	if len(p.warnings) < MaxFeedWarnings {
		p.warnings = append(p.warnings, err.Error())
	}
}

// warn keeps a record but notes what of it was left out.
func (p *parsedFeed) warn(err error) {
	if len(p.warnings) < MaxFeedWarnings {
		p.warnings = append(p.warnings, err.Error())
	}
}

func (p *parsedFeed) records() int {
	n := len(p.cna) + len(p.osv) + len(p.nvd) + len(p.patches)
	for _, c := range p.changelogs {
		n += len(c.Uploads)
	}
	return n
}

func loadFeed(ctx context.Context, spec FeedSpec, opts LoadOptions, prev *Feed) (*parsedFeed, FeedInfo, error) {
	info := FeedInfo{Kind: spec.Kind, Location: spec.Location}
	if !spec.isURL() {
		var same *parsedFeed
		if prev != nil && prev.Spec == spec {
			same = prev.pf
		}
		pf, err := parseFeedReusing(spec.Kind, spec.Location, opts.Keys, same)
		return pf, info, err
	}
	if opts.Fetcher == nil {
		return nil, info, errors.New("feed URLs need a cache folder (--cache-dir)")
	}
	if spec.Kind == FeedNVD {
		return fetchNVDPages(ctx, spec, opts.Fetcher)
	}
	var pf *parsedFeed
	res, err := opts.Fetcher.Fetch(ctx, spec.Location, func(path string) error {
		var err error
		pf, err = parseFeed(spec.Kind, path, opts.Keys)
		return err
	})
	if err != nil {
		return nil, info, err
	}
	info.FetchedAt, info.Stale = &res.FetchedAt, res.Stale
	if pf == nil && prev != nil && prev.pf != nil && prev.Spec == spec && prev.Info.FetchedAt != nil && prev.Info.FetchedAt.Equal(res.FetchedAt) {
		pf = prev.pf // the very download prev parsed
	}
	if pf == nil { // served from the cache: parse it now
		if pf, err = parseFeed(spec.Kind, res.Path, opts.Keys); err != nil {
			return nil, info, err
		}
	}
	return pf, info, nil
}

// fetchNVDPages follows the NVD API's paging (startIndex/totalResults).
func fetchNVDPages(ctx context.Context, spec FeedSpec, f *Fetcher) (*parsedFeed, FeedInfo, error) {
	info := FeedInfo{Kind: spec.Kind, Location: spec.Location}
	pf := &parsedFeed{kind: FeedNVD}
	h := sha256.New()
	next := spec.Location
	for pages := 0; next != ""; pages++ {
		if pages > 10000 {
			return nil, info, errors.New("more than 10000 pages")
		}
		var page *NVDPage
		var data []byte
		res, err := f.Fetch(ctx, next, func(path string) error {
			var err error
			if data, err = readLimited(path); err == nil {
				page, err = ParseNVD(path, data)
			}
			return err
		})
		if err != nil {
			return nil, info, err
		}
		if page == nil {
			if data, err = readLimited(res.Path); err != nil {
				return nil, info, err
			}
			if page, err = ParseNVD(res.Path, data); err != nil {
				return nil, info, err
			}
		}
		h.Write(data)
		if info.FetchedAt == nil || res.FetchedAt.Before(*info.FetchedAt) {
			t := res.FetchedAt
			info.FetchedAt = &t
		}
		if res.Stale != "" {
			info.Stale = res.Stale
		}
		pf.nvd = append(pf.nvd, page.Records...)
		next = ""
		if got := page.StartIndex + len(page.Records); len(page.Records) > 0 && got < page.TotalResults {
			u, err := url.Parse(spec.Location)
			if err != nil {
				return nil, info, err
			}
			q := u.Query()
			q.Set("startIndex", strconv.Itoa(got))
			u.RawQuery = q.Encode()
			next = u.String()
		}
	}
	pf.digest = hex.EncodeToString(h.Sum(nil))
	return pf, info, nil
}

// ParseFeed parses a local feed of kind at path. It refuses the signed
// bundles of a livepatch feed, having no keys to verify them: Load takes
// LoadOptions.Keys.
func ParseFeed(kind FeedKind, path string) (*parsedFeed, error) {
	return parseFeed(kind, path, nil)
}

func parseFeed(kind FeedKind, path string, keys func() (*bundle.Keyring, error)) (*parsedFeed, error) {
	return parseFeedReusing(kind, path, keys, nil)
}

// parseFeedReusing is parseFeed that returns prev, parsed before, when the
// files read are the same as prev's (Feed.Digest): a long-running planner
// refreshes every feed when one changed, and parsing is most of a
// refresh. Live patch feeds are parsed again whatever their digest: a
// bundle's verification depends on the keys as well.
func parseFeedReusing(kind FeedKind, path string, keys func() (*bundle.Keyring, error), prev *parsedFeed) (*parsedFeed, error) {
	pf := &parsedFeed{kind: kind}
	same := func() bool { return prev != nil && prev.kind == kind && prev.digest == pf.digest }
	json := func(base string) bool { return strings.HasSuffix(strings.ToLower(base), ".json") }
	switch kind {
	case FeedDebianChangelog:
		files, err := pf.readFiles(path, func(base string) bool { return strings.HasPrefix(base, "changelog") })
		if err != nil {
			return nil, err
		}
		if same() {
			return prev, nil
		}
		for _, f := range files {
			cl, err := ParseDebianChangelog(f.name, strings.NewReader(string(f.data)))
			if err != nil {
				return nil, err
			}
			pf.changelogs = append(pf.changelogs, cl)
		}
	case FeedCNA:
		files, err := pf.readFiles(path, func(base string) bool {
			if !strings.HasPrefix(base, "CVE-") {
				return false
			}
			switch filepath.Ext(base) {
			case ".json", ".dyad", ".sha1", ".cvss":
				return true
			}
			return false
		})
		if err != nil {
			return nil, err
		}
		if same() {
			return prev, nil
		}
		if err := pf.parseCNAFiles(files); err != nil {
			return nil, err
		}
		if limit := MaxSkipped(len(pf.cna) + pf.skipped); pf.skipped > limit {
			return nil, &ParseError{File: path, Err: fmt.Errorf("%d of %d records cannot be read (more than the %d a feed may skip), the first: %s",
				pf.skipped, len(pf.cna)+pf.skipped, limit, strings.Join(pf.warnings[:min(3, len(pf.warnings))], "; "))}
		}
	case FeedOSV:
		files, err := pf.readFiles(path, json)
		if err != nil {
			return nil, err
		}
		if same() {
			return prev, nil
		}
		for _, f := range files {
			recs, err := ParseOSV(f.name, f.data)
			if err != nil {
				return nil, err
			}
			pf.osv = append(pf.osv, recs...)
		}
	case FeedNVD:
		files, err := pf.readFiles(path, json)
		if err != nil {
			return nil, err
		}
		if same() {
			return prev, nil
		}
		for _, f := range files {
			page, err := ParseNVD(f.name, f.data)
			if err != nil {
				return nil, err
			}
			pf.nvd = append(pf.nvd, page.Records...)
		}
	case FeedLivePatch:
		files, err := pf.readFiles(path, func(base string) bool {
			switch strings.ToLower(filepath.Ext(base)) {
			case ".json", ".bundle", ".stb":
				return true
			}
			return false
		})
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if isBundle(f.data) {
				p, err := parseLivePatchBundle(f.name, f.data, keys)
				if err != nil {
					return nil, err
				}
				pf.patches = append(pf.patches, p)
				continue
			}
			ps, err := ParseLivePatches(f.name, f.data)
			if err != nil {
				return nil, err
			}
			pf.patches = append(pf.patches, ps...)
		}
	default:
		return nil, fmt.Errorf("unknown feed kind %q", kind)
	}
	if pf.records() == 0 {
		// An empty feed would make every host look clean, and an empty
		// livepatch feed every urgent CVE an emergency reboot.
		if pf.skipped > 0 {
			return nil, &ParseError{File: path, Err: fmt.Errorf("no %s records found: %d skipped, the first: %s", kind, pf.skipped, strings.Join(pf.warnings[:min(3, len(pf.warnings))], "; "))}
		}
		if kind == FeedLivePatch {
			return nil, &ParseError{File: path, Err: errors.New("no livepatch records found: want live patch manifests (*.json) or signed bundles (*.bundle, *.stb)")}
		}
		return nil, &ParseError{File: path, Err: fmt.Errorf("no %s records found", kind)}
	}
	return pf, nil
}

// parseCNAFiles groups a CNA tree's files by CVE id and parses each group.
//
// What fails the feed: the same file twice (the tree is not one record
// set). What skips one record, counted and named in the feed's warnings: a
// record that does not parse (unknown field values, a version form Stent
// cannot order, a malformed vector), whose id does not match its file
// name, or a .dyad, .sha1 or .cvss file with no record beside it (the kernel
// CNA leaves a .cvss in cve/published when it rejects a CVE). What keeps a
// record with a warning: a .dyad that does not parse (the JSON record's own
// ranges are used), a .sha1 or .cvss that does not parse (the record goes
// without its fixing commit or that score). ParseFeed refuses a feed that
// skips more than MaxSkipped records.
func (pf *parsedFeed) parseCNAFiles(files []feedFile) error {
	type group struct{ json, dyad, sha1, cvss *feedFile }
	groups := map[string]*group{}
	var ids []string
	for i := range files {
		f := &files[i]
		base := filepath.Base(f.name)
		if j := strings.LastIndexByte(f.name, ':'); j > 0 && strings.Contains(f.name[:j], ".tar") {
			base = filepath.Base(f.name[j+1:])
		}
		ext := filepath.Ext(base)
		id := strings.TrimSuffix(base, ext)
		g := groups[id]
		if g == nil {
			g = &group{}
			groups[id] = g
			ids = append(ids, id)
		}
		var slot **feedFile
		switch ext {
		case ".json":
			slot = &g.json
		case ".dyad":
			slot = &g.dyad
		case ".sha1":
			slot = &g.sha1
		case ".cvss":
			slot = &g.cvss
		}
		if *slot != nil {
			return &ParseError{File: f.name, Err: fmt.Errorf("%s appears twice (also %s)", base, (*slot).name)}
		}
		*slot = f
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := groups[id]
		if g.json == nil {
			var some *feedFile
			for _, f := range []*feedFile{g.dyad, g.sha1, g.cvss} {
				if f != nil {
					some = f
					break
				}
			}
			pf.skip(&ParseError{File: some.name, Err: fmt.Errorf("no %s.json beside it: skipped", id)})
			continue
		}
		rec, err := ParseCVERecord(g.json.name, g.json.data)
		if err == nil && rec.ID != id {
			err = &ParseError{File: g.json.name, Field: "cveMetadata.cveId", Err: fmt.Errorf("%s does not match the file name", rec.ID)}
		}
		if err != nil {
			pf.skip(fmt.Errorf("%w: %s skipped, its CVE unknown to every host", err, id))
			if cveIDPattern.MatchString(id) {
				pf.unreadable = append(pf.unreadable, &CNARecord{ID: id, SourceFiles: []string{g.json.name}, Unreadable: err.Error()})
			}
			continue
		}
		if rec.Rejected {
			continue
		}
		if g.dyad != nil {
			up, err := ParseDyad(g.dyad.name, g.dyad.data)
			switch {
			case err != nil && rec.JSONRanges == nil:
				pf.skip(fmt.Errorf("%w: %s skipped (its JSON record gives no version ranges either)", err, id))
				continue
			case err != nil:
				pf.warn(fmt.Errorf("%w: %s uses the ranges of its JSON record", err, id))
			default:
				rec.DyadRanges, rec.Upstream = up, up
				rec.SourceFiles = append(rec.SourceFiles, g.dyad.name)
			}
		}
		if g.sha1 != nil {
			if rec.FixCommit, err = ParseSHA1File(g.sha1.name, g.sha1.data); err != nil {
				pf.warn(fmt.Errorf("%w: %s has no fixing commit", err, id))
			}
		}
		if g.cvss != nil {
			s, err := ParseCVSSFile(g.cvss.name, g.cvss.data)
			if err != nil {
				pf.warn(fmt.Errorf("%w: %s goes without this score", err, id))
			} else {
				rec.Scores = append(rec.Scores, s)
			}
		}
		pf.cna = append(pf.cna, rec)
	}
	return nil
}
