package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/store"
	"github.com/stent-dev/stent/vuln"
)

// The vulnerability feeds the server keeps for planning: the --feed
// locations, refreshed every --feed-interval by a vuln.FeedSet (the
// parsers, cache, revalidation and atomic replacement of stent plan), and
// the manifests of the bundles published here, a livepatch feed of its
// own. FeedSet's generation and subscribers tell a planner when to plan
// again.

// PublishedFeedLocation names the livepatch feed of the published bundles.
const PublishedFeedLocation = "stent-server:published-bundles"

// feedKeeper is the Server's part that keeps the feeds.
type feedKeeper struct {
	set *vuln.FeedSet

	failures *prometheus.CounterVec

	mu        sync.Mutex                // guards the two below
	lastErr   map[string]string         // location → its last refresh's error, while it fails
	published map[string]vuln.LivePatch // bundle sha256 → its live patch
}

// newFeedKeeper checks the configured feeds; nothing is loaded yet.
func newFeedKeeper(cfg Config, client *http.Client, log *slog.Logger) (*feedKeeper, error) {
	var specs []vuln.FeedSpec
	for _, f := range cfg.Feeds {
		spec, err := vuln.ParseFeedSpec(f)
		if err != nil {
			return nil, fmt.Errorf("--feed: %w", err)
		}
		if strings.Contains(spec.Location, "://") && !strings.HasPrefix(spec.Location, "https://") {
			return nil, fmt.Errorf("--feed %s: only https URLs are fetched", redactLocation(f))
		}
		specs = append(specs, spec)
	}
	cache := cfg.FeedCacheDir
	if cache == "" {
		cache = filepath.Join(cfg.DataDir, "feeds")
	}
	opts := vuln.LoadOptions{Fetcher: &vuln.Fetcher{Client: client, CacheDir: cache, Log: log}}
	if cfg.KeysDir != "" {
		// Bundles in a --feed livepatch= folder verify as publishing does.
		opts.Keys = func() (*bundle.Keyring, error) { return bundle.LoadKeyring(cfg.KeysDir) }
	}
	return &feedKeeper{
		set:       vuln.NewFeedSet(specs, opts),
		lastErr:   map[string]string{},
		published: map[string]vuln.LivePatch{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stent_server_feed_failures_total",
			Help: "Feed refreshes that failed (the previous copy stays in use), by feed."}, []string{"kind", "location"}),
	}, nil
}

// Feeds returns the feeds the server keeps: their DB (FeedSet.DB), its
// generation and the subscription that wakes a planner on a new one.
func (s *Server) Feeds() *vuln.FeedSet { return s.fk.set }

// feedLoop refreshes the feeds at once and then every FeedInterval, until
// ctx ends.
func (s *Server) feedLoop(ctx context.Context) {
	s.syncPublishedFeed(ctx)
	if len(s.fk.set.Specs()) == 0 {
		return
	}
	t := time.NewTicker(s.cfg.FeedInterval)
	defer t.Stop()
	for {
		s.refreshFeeds(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshFeeds refreshes every feed once, and records what happened: the
// failures counter, a log line, and an audit entry when a feed's content
// changes or it starts failing (not at every failure of a feed that keeps
// failing: the log and GET /v1/admin/feeds have each reason).
func (s *Server) refreshFeeds(ctx context.Context) {
	res := s.fk.set.Refresh(ctx)
	now := s.now().UTC()
	var audits []*api.AuditEntry
	s.fk.mu.Lock()
	for _, r := range res {
		loc := redactLocation(r.Spec.Location)
		log := s.log.With("feed", string(r.Spec.Kind), "location", loc)
		prevErr := s.fk.lastErr[r.Spec.Location]
		switch {
		case r.Err != nil:
			s.fk.failures.WithLabelValues(string(r.Spec.Kind), loc).Inc()
			msg := redactError(r.Err, r.Spec.Location)
			kept := "no copy in use yet"
			if r.Records > 0 {
				kept = fmt.Sprintf("the previous copy (%d records) stays in use", r.Records)
			}
			log.Warn("feed refresh failed; "+kept, "err", msg)
			if prevErr == "" { // it was fine: audit that it is failing now
				audits = append(audits, &api.AuditEntry{At: now, Actor: "server", Action: "feed.fail", Target: string(r.Spec.Kind) + "=" + loc,
					Detail: mustJSON(map[string]any{"error": msg, "records_in_use": r.Records})})
			}
			s.fk.lastErr[r.Spec.Location] = msg
		case prevErr != "":
			log.Info("feed refreshed again", "records", r.Records)
			delete(s.fk.lastErr, r.Spec.Location)
		}
		if r.Changed {
			log.Info("feed updated", "records", r.Records, "previous_records", r.Prev)
			audits = append(audits, &api.AuditEntry{At: now, Actor: "server", Action: "feed.update", Target: string(r.Spec.Kind) + "=" + loc,
				Detail: mustJSON(map[string]any{"records": r.Records, "previous_records": r.Prev})})
		}
	}
	s.fk.mu.Unlock()
	if gen, _, err := s.fk.set.DBStatus(); err != nil && len(res) > 0 {
		s.log.Warn("the feeds make no vulnerability database", "generation_in_use", gen, "err", err)
	}
	if len(audits) == 0 {
		return
	}
	err := s.w.do(ctx, func(tx *store.Tx) error {
		for _, e := range audits {
			if err := tx.InsertAudit(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("audit of feed changes not written", "err", err)
	}
}

// notePublished remembers the live patch of a bundle just published, from
// its bytes, so that syncPublishedFeed need not read them back.
func (s *Server) notePublished(info *api.BundleInfo, data []byte) {
	p := publishedPatch(info, data)
	s.fk.mu.Lock()
	s.fk.published[info.SHA256] = p
	s.fk.mu.Unlock()
}

// syncPublishedFeed makes the published bundles the livepatch feed
// PublishedFeedLocation: each bundle's manifest (read from the store the
// first time), released when it was published here.
func (s *Server) syncPublishedFeed(ctx context.Context) {
	s.mu.RLock()
	infos := make([]*api.BundleInfo, 0, len(s.bundles))
	for _, b := range s.bundles {
		infos = append(infos, b)
	}
	s.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].SHA256 < infos[j].SHA256 })
	patches := make([]vuln.LivePatch, 0, len(infos))
	for _, b := range infos {
		s.fk.mu.Lock()
		p, ok := s.fk.published[b.SHA256]
		s.fk.mu.Unlock()
		if !ok {
			data, err := s.st.BundleData(ctx, b.SHA256)
			if err != nil {
				// Its description is enough to go on; its bytes are
				// tried again at the next publish.
				s.log.Warn("published bundle not read for the livepatch feed", "bundle", b.SHA256, "err", err)
				patches = append(patches, publishedPatch(b, nil))
				continue
			}
			p = publishedPatch(b, data)
			s.fk.mu.Lock()
			s.fk.published[b.SHA256] = p
			s.fk.mu.Unlock()
		}
		patches = append(patches, p)
	}
	if s.fk.set.SetFeed(vuln.LivePatchFeed(PublishedFeedLocation, patches)) {
		s.log.Info("livepatch feed of the published bundles updated", "patches", len(patches))
	}
}

// publishedPatch is the live patch of a published bundle: its manifest
// (verified on publishing when the server has --keys-dir), or, for bytes
// that do not parse as a bundle, its description.
func publishedPatch(info *api.BundleInfo, data []byte) vuln.LivePatch {
	var p vuln.LivePatch
	if b, err := bundle.Parse(data); err == nil {
		p = vuln.LivePatchOf(b.Manifest())
	} else {
		p.Name, p.CVEs, p.Kernel.Release = info.Name, append([]string(nil), info.CVEs...), info.KernelRelease
	}
	if p.CVEs == nil {
		p.CVEs = []string{}
	}
	p.Released = info.Published
	return p
}

// feedsStatus is the API's view of the feeds.
func (s *Server) feedsStatus() *api.FeedsStatus {
	gen, built, err := s.fk.set.DBStatus()
	out := &api.FeedsStatus{Generation: gen, BuiltAt: built, Interval: api.Duration(s.cfg.FeedInterval), Feeds: []api.FeedStatus{}}
	if err != nil {
		out.Error = err.Error()
	}
	for _, st := range s.fk.set.Status() {
		fs := api.FeedStatus{
			Kind: string(st.Spec.Kind), Location: redactLocation(st.Spec.Location), Automatic: st.Automatic, InUse: st.InUse,
			Records: st.Info.Records, Skipped: st.Info.Skipped, Warnings: st.Info.Warnings, Newest: st.Info.Newest,
			FetchedAt: st.Info.FetchedAt, Digest: st.Digest,
			LastAttempt: st.LastAttempt, LastSuccess: st.LastSuccess, LastChange: st.LastChange, Failures: st.Failures,
		}
		if st.Err != nil {
			fs.Error = redactError(st.Err, st.Spec.Location)
		}
		out.Feeds = append(out.Feeds, fs)
	}
	return out
}

func (s *Server) feedRoutes() []route {
	return []route{
		{"GET " + api.PathFeeds, api.RoleViewer, s.handleFeeds},
		{"POST " + api.PathFeedsRefresh, api.RoleOperator, s.handleRefreshFeeds},
	}
}

func (s *Server) handleFeeds(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.feedsStatus())
}

// handleRefreshFeeds refreshes every feed now (after a refresh under way
// ends) and answers how they stand.
func (s *Server) handleRefreshFeeds(w http.ResponseWriter, r *http.Request) error {
	s.syncPublishedFeed(r.Context())
	s.refreshFeeds(r.Context())
	if err := r.Context().Err(); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.feedsStatus())
}

// redactLocation hides the password of a URL's user information: feed
// locations are shown to viewers and written to logs and metrics.
func redactLocation(loc string) string {
	if !strings.Contains(loc, "://") {
		return loc
	}
	u, err := url.Parse(loc)
	if err != nil || u.User == nil {
		return loc
	}
	return u.Redacted()
}

// redactError is err's text with the feed's location redacted.
func redactError(err error, loc string) string {
	msg := err.Error()
	if r := redactLocation(loc); r != loc {
		msg = strings.ReplaceAll(msg, loc, r)
	}
	return msg
}

var (
	descFeedLastSuccess = prometheus.NewDesc("stent_server_feed_last_success_timestamp_seconds", "When the feed last loaded (Unix time; 0 never).", []string{"kind", "location"}, nil)
	descFeedRecords     = prometheus.NewDesc("stent_server_feed_records", "Records of the feed's copy in use (0: none in use).", []string{"kind", "location"}, nil)
	descFeedUp          = prometheus.NewDesc("stent_server_feed_up", "1 when the feed's last refresh succeeded, 0 when it failed (the previous copy stays in use).", []string{"kind", "location"}, nil)
	descFeedGeneration  = prometheus.NewDesc("stent_server_feed_generation", "Generation of the vulnerability database the feeds made (0: none yet).", nil, nil)
	descFeedDBOK        = prometheus.NewDesc("stent_server_feed_database_ok", "1 when the feeds in use make a vulnerability database, 0 when they do not (an earlier one stays in use).", nil, nil)
)

type feedCollector struct{ fk *feedKeeper }

func (c feedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFeedLastSuccess, descFeedRecords, descFeedUp, descFeedGeneration, descFeedDBOK} {
		ch <- d
	}
}

func (c feedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.fk.set.Status() {
		labels := []string{string(st.Spec.Kind), redactLocation(st.Spec.Location)}
		var last float64
		if !st.LastSuccess.IsZero() {
			last = float64(st.LastSuccess.UnixNano()) / 1e9
		}
		up := 1.0
		if st.Err != nil || st.LastAttempt.IsZero() {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descFeedLastSuccess, prometheus.GaugeValue, last, labels...)
		ch <- prometheus.MustNewConstMetric(descFeedRecords, prometheus.GaugeValue, float64(st.Info.Records), labels...)
		ch <- prometheus.MustNewConstMetric(descFeedUp, prometheus.GaugeValue, up, labels...)
	}
	gen, _, err := c.fk.set.DBStatus()
	ok := 1.0
	if err != nil {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(descFeedGeneration, prometheus.GaugeValue, float64(gen))
	ch <- prometheus.MustNewConstMetric(descFeedDBOK, prometheus.GaugeValue, ok)
}

func (fk *feedKeeper) register(reg *prometheus.Registry) {
	reg.MustRegister(fk.failures, feedCollector{fk})
}
