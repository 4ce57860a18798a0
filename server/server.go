// Package server is stent-server: the control plane of a Stent fleet. It
// enrolls hosts, takes published bundles, runs staged rollouts and wakes
// agents through long-polls the moment their desired state changes.
//
// One Server value holds everything: the store, an in-memory copy of the
// fleet (hosts, rollouts, desired states) that every request reads, and a
// single writer goroutine that group-commits changes to the store. The
// store is the truth: a server killed at any point rebuilds the same
// memory from it on the next start.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/server/web"
	"github.com/stent-dev/stent/store"
)

// Server is a running control server.
type Server struct {
	cfg         Config
	st          *store.Store
	log         *slog.Logger
	reg         *prometheus.Registry
	met         *metrics
	w           *writer
	inspect     func([]byte) (*api.BundleInfo, error)
	now         func() time.Time
	cert        tls.Certificate
	fingerprint string
	kick        chan struct{} // wakes the rollout engine
	polls       atomic.Int64  // long-polls being held
	lock        *store.Lock   // PostgreSQL: the database lock; nil on SQLite
	dirLock     func()        // SQLite: releases the flock on the data folder
	active      atomic.Bool   // serving the API (see ha.go)
	fatal       chan error    // makes Serve stop: lock lost, take-over failed

	mu      sync.RWMutex // guards everything below
	hosts   map[string]*host
	byToken map[string]*host // hex sha256 of credential -> host
	// hostsGen counts hosts enrolled, revoked or relabelled: what a
	// cached answer over the hosts depends on besides the plan.
	hostsGen    uint64
	rollouts    []*rollout // creation order
	rolloutByID map[string]*rollout
	bundles     map[string]*api.BundleInfo
	blobs       map[string][]byte // bundle bytes, loaded on first download
	settings    api.Settings
	lastSeq     int64

	admins adminCache
	rb     rebootState // kernel rollouts, windows, leases (reboot.go)
	fk     *feedKeeper // vulnerability feeds (feeds.go)
	lp     *livePlan   // the live plan (liveplan.go)

	policyMu sync.Mutex   // serialises policy uploads (policy.go)
	ak       actionKeeper // the live plan's actions (actions.go)
	cx       cveCache     // the live plan's CVEs, indexed (cves.go)
	changed  changes      // wakes the dashboard's event streams (changes.go)

	probeMu  sync.Mutex // guards the two below (see probeStore)
	probeAt  time.Time
	probeErr error

	reportLimit rateLimiter // reports per host
}

// Options are the parts of a Server tests replace.
type Options struct {
	Log *slog.Logger
	// Inspect reads a published bundle's description and refuses bundles
	// that do not parse (or, with Config.KeysDir, do not verify); nil uses
	// the bundle package.
	Inspect func([]byte) (*api.BundleInfo, error)
	Now     func() time.Time
	// FeedClient fetches the feeds given as URLs; nil: http.DefaultClient.
	FeedClient *http.Client
}

// New opens the store, loads the fleet into memory and prepares TLS. On a
// first start it creates an admin token and writes it to
// <data-dir>/admin.token (mode 0600).
//
// On PostgreSQL it first tries the database lock once; when another
// instance holds it, New returns a standby that loads nothing until Serve
// gets the lock (see ha.go). On SQLite it takes the data folder, and fails
// when another server has it.
func New(ctx context.Context, cfg Config, opt Options) (*Server, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if cfg.CheckinInterval <= 0 {
		cfg.CheckinInterval = DefaultConfig().CheckinInterval
	}
	if cfg.EngineTick <= 0 {
		cfg.EngineTick = DefaultConfig().EngineTick
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = time.Minute
	}
	if cfg.MaxBundleSize <= 0 {
		cfg.MaxBundleSize = DefaultConfig().MaxBundleSize
	}
	if cfg.FeedInterval <= 0 {
		cfg.FeedInterval = DefaultConfig().FeedInterval
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		log:         opt.Log,
		inspect:     opt.Inspect,
		now:         opt.Now,
		kick:        make(chan struct{}, 1),
		fatal:       make(chan error, 1),
		hosts:       map[string]*host{},
		byToken:     map[string]*host{},
		rolloutByID: map[string]*rollout{},
		bundles:     map[string]*api.BundleInfo{},
		blobs:       map[string][]byte{},
		settings:    api.Settings{CheckinInterval: api.Duration(cfg.CheckinInterval)},
	}
	switch {
	case cfg.KeysDir != "" && cfg.AcceptAnySigner:
		return nil, errors.New("--keys-dir and --accept-any-signer contradict each other: give one")
	case cfg.KeysDir == "" && !cfg.AcceptAnySigner && s.inspect == nil:
		return nil, errors.New("no trusted publisher keys: give --keys-dir FOLDER, the public keys (*.pub, from stent key generate) whose bundles may be published, or --accept-any-signer to publish bundles whatever key signed them (hosts still verify against their own keys)")
	}
	fk, err := newFeedKeeper(cfg, opt.FeedClient, opt.Log)
	if err != nil {
		return nil, err
	}
	s.fk = fk
	s.lp = newLivePlan()
	if s.inspect == nil {
		insp, err := bundleInspector(cfg.KeysDir)
		if err != nil {
			return nil, err
		}
		s.inspect = insp
	}
	if s.cert, err = loadTLS(&cfg); err != nil {
		return nil, err
	}
	s.fingerprint = Fingerprint(s.cert.Certificate[0])
	if cfg.DB == "" {
		if s.dirLock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if s.st, err = store.Connect(ctx, cfg.dbDSN()); err != nil {
		s.close()
		return nil, err
	}
	s.reg = prometheus.NewRegistry()
	s.met = newMetrics(s)
	s.fk.register(s.reg)
	s.w = newWriter(s.st, s.log, s.met, s.fail)
	s.w.committed = s.changed.notify
	if s.st.Engine() == store.Postgres {
		if s.lock, err = s.st.NewLock(); err != nil {
			s.close()
			return nil, err
		}
		ok, err := s.lock.Try(ctx)
		if err != nil {
			s.close()
			return nil, err
		}
		if !ok {
			return s, nil // a standby; Serve waits for the lock
		}
	}
	if err := s.activate(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close releases the store, the lock and the data folder.
func (s *Server) close() {
	if s.st != nil {
		s.st.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
	if s.dirLock != nil {
		s.dirLock()
	}
}

// Fingerprint returns the pin of the server's TLS certificate.
func (s *Server) Fingerprint() string { return s.fingerprint }

// Store returns the server's store, for tests and tools.
func (s *Server) Store() *store.Store { return s.st }

// Registry returns the server's Prometheus registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// BootstrapTokenFile is where the first admin token is written.
func (s *Server) BootstrapTokenFile() string { return filepath.Join(s.cfg.DataDir, "admin.token") }

// Run listens on the configured address and serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTPS on ln until ctx is cancelled, then shuts down: held
// long-polls end at once, queued writes are committed, the store is closed.
// A standby serves 503s until it gets the database lock, then takes over.
// When the active instance loses the lock, Serve stops the API and the
// rollout engine at once and returns an error wrapping ErrLockLost.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wctx, stopWriter := context.WithCancel(context.Background())
	go s.w.run(wctx)
	// One goroutine owns the lock: it waits for it (standby), then runs
	// the rollout engine and checks the lock until ctx ends.
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		if !s.active.Load() {
			if err := s.awaitLock(ctx); err != nil {
				if ctx.Err() == nil {
					s.fail(err)
				}
				return
			}
		}
		ectx, stopEngine := context.WithCancel(ctx)
		done, feedsDone, planDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() { defer close(done); s.engine(ectx) }()
		go func() { defer close(feedsDone); s.feedLoop(ectx) }()
		go func() { defer close(planDone); s.planLoop(ectx) }()
		exposureDone := make(chan struct{})
		go func() { defer close(exposureDone); s.exposureLoop(ectx) }()
		defer func() { <-exposureDone }()
		if s.lock != nil {
			s.watchLock(ctx)
		} else {
			<-ctx.Done()
		}
		stopEngine()
		<-done
		<-feedsDone
		<-planDone
	}()

	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 15 * time.Second,
		IdleTimeout:       3*s.cfg.CheckinInterval + time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          log.New(io.Discard, "", 0), // TLS handshake noise from scanners and killed agents
	}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12, CipherSuites: api.CipherSuites})
	var msrv *http.Server
	if s.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			cancel()
			<-engineDone
			stopWriter()
			<-s.w.done
			s.close()
			return fmt.Errorf("listen %s: %w", s.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET "+api.PathMetrics, s.metricsHandler())
		// Profiles for whoever can reach the metrics address (keep it on
		// loopback or a management network).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
	}
	role := "standby"
	if s.active.Load() {
		role = "active"
	}
	s.mu.RLock()
	s.log.Info("stent-server listening", "addr", ln.Addr().String(), "fingerprint", s.fingerprint,
		"store", s.st.Engine(), "role", role, "hosts", len(s.hosts), "rollouts", len(s.rollouts))
	s.mu.RUnlock()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tlsLn) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	case err = <-s.fatal:
	}
	// Ends held long-polls, the rollout engine and the lock's checks first.
	cancel()
	sctx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	srv.Shutdown(sctx)
	if msrv != nil {
		msrv.Shutdown(sctx)
	}
	<-engineDone
	stopWriter()
	<-s.w.done
	s.close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Handler returns the HTTP API and, under /ui/, the web dashboard, whose
// pages call the API in process with the logged-in token.
func (s *Server) Handler() http.Handler {
	apiMux := http.NewServeMux()
	s.routes(apiMux)
	ui, err := web.New(web.Config{API: apiMux, Now: s.now, Log: s.log, SessionTTL: s.cfg.SessionTTL, Sessions: uiSessions{s}, Changes: s.changed.next})
	if err != nil {
		panic(err) // the embedded templates do not parse: a bug the tests catch
	}
	mux := http.NewServeMux()
	mux.Handle("/", apiMux)
	mux.Handle(web.Prefix, ui)
	mux.Handle("/ui", ui)
	return mux
}

// httpError is an error with the status and text to show the client; err,
// when set, is logged and not shown.
type httpError struct {
	status int
	code   string
	msg    string
	err    error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}
func (e *httpError) Unwrap() error { return e.err }

func errorf(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// internal is the answer to an unexpected error; a store that is full or
// cannot be written gets its own code (see storeError).
func internal(err error) *httpError {
	if store.Classify(err) != nil {
		return storeError(err)
	}
	return &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", err: err}
}

// handlerFunc is an HTTP handler that returns its error.
type handlerFunc func(http.ResponseWriter, *http.Request) error

// handle registers h at pattern behind the authentication need names:
// "" (none), "host", or an admin role.
func (s *Server) handle(mux *http.ServeMux, pattern, need string, h handlerFunc) {
	obs := s.met.apiLatency.MustCurryWith(prometheus.Labels{"route": pattern})
	// Bodies must arrive in reasonable time: a slow client does not get to
	// hold a goroutine forever. Publishing a large bundle gets longer.
	bodyTimeout := s.cfg.BodyTimeout
	if pattern == "POST "+api.PathAdminBundle {
		bodyTimeout = 15 * time.Minute
	}
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if !s.active.Load() {
			writeStandby(sw)
			obs.WithLabelValues(statusClass(sw.status)).Observe(time.Since(start).Seconds())
			return
		}
		http.NewResponseController(w).SetReadDeadline(start.Add(bodyTimeout))
		r, err := s.authorize(r, need)
		if err == nil {
			err = h(sw, r)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			var he *httpError
			if !errors.As(err, &he) {
				he = internal(err)
			}
			if he.status >= 500 {
				s.log.Warn("request failed", "route", pattern, "err", err)
			}
			if he.status == http.StatusServiceUnavailable || he.status == http.StatusTooManyRequests {
				sw.Header().Set("Retry-After", "30")
			}
			if sw.status == 0 {
				writeJSON(sw, he.status, api.Error{Error: he.msg, Code: he.code})
			}
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		obs.WithLabelValues(statusClass(sw.status)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func statusClass(code int) string { return fmt.Sprintf("%dxx", code/100) }

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// readJSON decodes a request body of at most limit bytes into v, and reads
// the body to its end: only then does the HTTP server watch the connection,
// so a long-poll learns at once when its agent goes away.
func readJSON(r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(nil, r.Body, limit)
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if err == nil {
		_, err = io.Copy(io.Discard, body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "too_large", "request body over %d bytes", limit)
		}
		return errorf(http.StatusBadRequest, "bad_request", "request body: %v", err)
	}
	return nil
}

// storeError is the answer to a failed store write or read: 507 when the
// disk is full, 503 when the store cannot be written otherwise (read-only
// file system, database down), so that clients and balancers can tell it
// from a bug; other errors are 500.
func storeError(err error) *httpError {
	switch store.Classify(err) {
	case nil:
		return &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", err: err}
	case store.ErrFull:
		return &httpError{status: http.StatusInsufficientStorage, code: "storage_full", msg: "the server's store is full; an operator must free space", err: err}
	case store.ErrUnavailable:
		return &httpError{status: http.StatusServiceUnavailable, code: "store_unavailable", msg: "the server's store cannot be written now; try again later", err: err}
	}
	return &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", err: err}
}

// probeStore reports whether the store takes writes: it fails when a write
// failed for a full or unwritable store in the last storeFailWindow, and
// otherwise writes a setting (at most every two seconds).
func (s *Server) probeStore(ctx context.Context) error {
	if err := s.w.recentFailure(); err != nil {
		return err
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if time.Since(s.probeAt) < 2*time.Second {
		return s.probeErr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := s.now().UTC()
	s.probeErr = s.w.do(ctx, func(tx *store.Tx) error { return tx.PutSetting(ctx, "healthz_probe", now.Format(time.RFC3339Nano)) })
	s.probeAt = time.Now()
	return s.probeErr
}
