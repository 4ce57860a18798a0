package vuln

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// FeedSet keeps a set of feeds current for a long-running planner (such as
// stent-server): Refresh loads each feed again, the way Load does (same
// parsers, same Fetcher with its cache, revalidation and atomic
// replacement), and a feed that fails to load keeps its last good copy in
// use while its status says why. Feeds given by the program (SetFeed: the
// live patches a server publishes) join the ones read from locations.
//
// Every change of the content in use makes a new DB and a new generation,
// and wakes the subscribers (Subscribe), so a planner recomputes only when
// something changed. A FeedSet is safe for concurrent use.
type FeedSet struct {
	opts LoadOptions
	now  func() time.Time

	refreshMu sync.Mutex // one refresh at a time
	buildMu   sync.Mutex // one build at a time

	mu     sync.Mutex // guards everything below
	feeds  []*feedState
	extra  []*feedState // SetFeed's, by Spec.Location
	gen    uint64       // bumped by every change of the feeds in use
	db     *DB
	dbGen  uint64
	dbErr  error // why the feeds in use, at generation dbErrGen, made no DB
	dbAt   time.Time
	errGen uint64
	subs   map[chan struct{}]struct{}
}

type feedState struct {
	spec        FeedSpec
	cur         *Feed // the last good copy, in use; nil before the first
	lastAttempt time.Time
	lastSuccess time.Time
	lastChange  time.Time
	err         error
	failures    int
}

// FeedStatus is how one feed of a FeedSet stands.
type FeedStatus struct {
	Spec FeedSpec
	// Info describes the copy in use (Records 0 when there is none yet).
	Info  FeedInfo
	InUse bool // a good copy is in use
	// Automatic is set for the feeds given by the program (SetFeed)
	// rather than loaded from a location.
	Automatic   bool
	Digest      string
	LastAttempt time.Time // zero before the first refresh
	LastSuccess time.Time // the last refresh that loaded the feed
	LastChange  time.Time // when the content in use last changed
	// Err says why the last refresh failed (not naming the feed: Spec
	// does); nil when it succeeded. The
	// copy in use then stays the last good one. A feed server that could
	// not be reached counts as a failure though the cached copy is used.
	Err      error
	Failures int // refreshes failed in a row
}

// FeedResult is what one feed's refresh did.
type FeedResult struct {
	Spec    FeedSpec
	Changed bool  // a new content is in use
	Err     error // the refresh failed; the previous copy stays in use
	Records int   // of the copy in use
	Prev    int   // records of the copy in use before, -1 when there was none
}

// NewFeedSet returns a set of specs, none loaded yet: call Refresh.
// opts.Keys is called at each refresh that meets a bundle, so a changed
// keys folder is read again.
func NewFeedSet(specs []FeedSpec, opts LoadOptions) *FeedSet {
	s := &FeedSet{opts: opts, now: time.Now, subs: map[chan struct{}]struct{}{}}
	for _, sp := range specs {
		s.feeds = append(s.feeds, &feedState{spec: sp})
	}
	return s
}

// Specs returns the feeds the set loads from locations.
func (s *FeedSet) Specs() []FeedSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FeedSpec, len(s.feeds))
	for i, f := range s.feeds {
		out[i] = f.spec
	}
	return out
}

// Refresh loads every feed again, one after the other, and builds a new DB
// when any content changed. It returns what happened to each feed, in the
// order of the specs. Cancelling ctx stops it between feeds; a feed cut
// off keeps its copy.
func (s *FeedSet) Refresh(ctx context.Context) []FeedResult {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	opts := s.opts.once()
	s.mu.Lock()
	states := append([]*feedState(nil), s.feeds...)
	s.mu.Unlock()
	var out []FeedResult
	for _, st := range states {
		if ctx.Err() != nil {
			break
		}
		out = append(out, s.refreshOne(ctx, st, opts))
	}
	s.rebuild()
	return out
}

func (s *FeedSet) refreshOne(ctx context.Context, st *feedState, opts LoadOptions) FeedResult {
	s.mu.Lock()
	prev := st.cur
	s.mu.Unlock()
	f, err := loadFeedReusing(ctx, st.spec, opts, prev)
	now := s.now().UTC()
	res := FeedResult{Spec: st.spec, Prev: -1}
	if prev != nil {
		res.Prev = prev.Info.Records
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.lastAttempt = now
	if err == nil && f.Info.Stale != "" {
		when := "never"
		if f.Info.FetchedAt != nil {
			when = f.Info.FetchedAt.UTC().Format(time.RFC3339)
		}
		err = fmt.Errorf("server unreachable, using the copy fetched %s: %s", when, f.Info.Stale)
		if prev != nil && prev.Digest == f.Digest {
			f = nil // nothing new to use
		}
	}
	if f != nil && (prev == nil || prev.Digest != f.Digest) {
		st.cur, st.lastChange = f, now
		s.gen++
		res.Changed = true
	} else if f != nil {
		st.cur = f // the same content; its Info may say more (fetched_at)
	}
	if err != nil {
		st.err = err
		st.failures++
	} else {
		st.err, st.failures, st.lastSuccess = nil, 0, now
	}
	res.Err = err
	if st.cur != nil {
		res.Records = st.cur.Info.Records
	}
	return res
}

// SetFeed puts f in use beside the feeds loaded from locations, replacing
// the one of the same Spec.Location. A feed without records stays listed
// (Status) but goes into no DB. Only a change of content (Feed.Digest)
// makes a new DB; SetFeed reports whether there was one.
func (s *FeedSet) SetFeed(f *Feed) bool {
	now := s.now().UTC()
	s.mu.Lock()
	i := 0
	for ; i < len(s.extra); i++ {
		if s.extra[i].spec.Location == f.Spec.Location {
			break
		}
	}
	changed := true
	switch {
	case i == len(s.extra):
		s.extra = append(s.extra, &feedState{spec: f.Spec, cur: f, lastAttempt: now, lastSuccess: now, lastChange: now})
		changed = f.Info.Records > 0
	case s.extra[i].cur.Digest == f.Digest:
		changed = false
	default:
		s.extra[i].cur, s.extra[i].lastChange = f, now
	}
	if i < len(s.extra) {
		s.extra[i].lastAttempt, s.extra[i].lastSuccess = now, now
	}
	if changed {
		s.gen++
	}
	s.mu.Unlock()
	if changed {
		s.rebuild()
	}
	return changed
}

// rebuild makes the DB of the feeds in use when they changed since the
// last build. A set that does not build (no feed says which kernels fix
// which CVE yet, or the feeds contradict) keeps the previous DB, and
// DBStatus says why.
func (s *FeedSet) rebuild() {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	gen := s.gen
	if gen == s.dbGen || gen == s.errGen {
		s.mu.Unlock()
		return
	}
	var feeds []*Feed
	for _, st := range append(s.feeds[:len(s.feeds):len(s.feeds)], s.extra...) {
		if st.cur != nil && st.cur.Info.Records > 0 {
			feeds = append(feeds, st.cur)
		}
	}
	s.mu.Unlock()

	var db *DB
	err := errors.New("no feed loaded yet")
	if len(feeds) > 0 {
		db, err = BuildDB(feeds)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.dbErr, s.errGen = err, gen
		return
	}
	s.db, s.dbGen, s.dbErr, s.errGen, s.dbAt = db, gen, nil, 0, s.now().UTC()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // already woken; it reads the newest DB anyway
		}
	}
}

// DB returns the newest DB and its generation, or nil and 0 before the
// feeds first made one.
func (s *FeedSet) DB() (*DB, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db, s.dbGen
}

// DBStatus says when the DB in use was built and, when the feeds in use
// now do not build (for example none yet says which kernels fix which
// CVE), why: the DB of an earlier generation then stays in use.
func (s *FeedSet) DBStatus() (gen uint64, builtAt time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dbGen, s.dbAt, s.dbErr
}

// Subscribe returns a channel that receives a value after each new DB
// (several new DBs between two reads make one value), and a function that
// ends the subscription.
func (s *FeedSet) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// Status returns every feed's status: the ones loaded from locations in
// the order of the specs, then the ones the program set.
func (s *FeedSet) Status() []FeedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FeedStatus, 0, len(s.feeds)+len(s.extra))
	for _, st := range s.feeds {
		out = append(out, st.status(false))
	}
	for _, st := range s.extra {
		out = append(out, st.status(true))
	}
	return out
}

func (st *feedState) status(automatic bool) FeedStatus {
	fs := FeedStatus{Spec: st.spec, Info: FeedInfo{Kind: st.spec.Kind, Location: st.spec.Location}, Automatic: automatic,
		LastAttempt: st.lastAttempt, LastSuccess: st.lastSuccess, LastChange: st.lastChange, Err: st.err, Failures: st.failures}
	if st.cur != nil {
		fs.Info, fs.InUse, fs.Digest = st.cur.Info, true, st.cur.Digest
	}
	return fs
}
