package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/policy"
	"github.com/stent-dev/stent/store"
)

// Kernel updates and reboots (issue 8): maintenance windows per group of
// hosts, kernel rollouts that put a DesiredKernel into their hosts'
// desired state, and reboot leases that let at most a window's
// MaxUnavailable hosts of its group reboot at once. This file holds the
// state and the windows; kernelrollout.go the rollouts, rebootlease.go
// the leases and the operator's view.

// defaultLeaseTTL bounds how long a host may stay away with a lease when
// its window does not say.
const defaultLeaseTTL = 30 * time.Minute

// rebootState is the in-memory copy of windows, kernel rollouts, leases,
// approvals and the hosts' kernel check-ins. Its maps are guarded by
// Server.mu; op serialises whole changes (decide, persist, apply) so that
// two of them never decide from the same stale memory.
type rebootState struct {
	op        sync.Mutex
	windows   []*window // by name
	krs       []*krollout
	krByID    map[string]*krollout
	krefs     map[string][]*kernelHost // host id -> its rows, in rollout order
	leases    map[string]*store.Lease  // host id -> lease
	approvals map[string]*store.Approval
	kernels   map[string]*api.KernelCheckin // host id -> last kernel check-in
	lastSeq   int64
	duration  prometheus.Histogram
}

// window is a maintenance window with its parsed schedule.
type window struct {
	api.MaintenanceWindow
	sched policy.Window
}

// loadReboots fills the reboot state from the store. Callers own s.
func (s *Server) loadReboots(ctx context.Context) error {
	rb := &s.rb
	rb.windows, rb.krs = nil, nil
	rb.krByID, rb.krefs = map[string]*krollout{}, map[string][]*kernelHost{}
	rb.leases, rb.approvals = map[string]*store.Lease{}, map[string]*store.Approval{}
	ws, err := s.st.ListWindows(ctx)
	if err != nil {
		return err
	}
	for _, mw := range ws {
		w, err := parseWindow(*mw)
		if err != nil {
			return fmt.Errorf("load window %s: %w", mw.Name, err)
		}
		rb.windows = append(rb.windows, w)
	}
	if rb.kernels, err = s.st.KernelCheckins(ctx); err != nil {
		return err
	}
	krs, err := s.st.ListKernelRollouts(ctx)
	if err != nil {
		return err
	}
	for _, sr := range krs {
		s.addKernelRollout(sr)
		rb.lastSeq = max(rb.lastSeq, sr.Seq)
	}
	khs, err := s.st.ListKernelHosts(ctx)
	if err != nil {
		return err
	}
	for _, kh := range khs {
		r, h := rb.krByID[kh.RolloutID], s.hosts[kh.HostID]
		if r == nil || h == nil {
			return fmt.Errorf("load: kernel rollout host %s/%s refers to a missing rollout or host", kh.RolloutID, kh.HostID)
		}
		s.attachKernel(r, h, kh)
	}
	ls, err := s.st.ListLeases(ctx)
	if err != nil {
		return err
	}
	for _, l := range ls {
		rb.leases[l.HostID] = l
	}
	as, err := s.st.ListApprovals(ctx)
	if err != nil {
		return err
	}
	for _, a := range as {
		rb.approvals[a.HostID] = a
	}
	return nil
}

var windowName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// parseWindow checks a window as an operator sends it and fills defaults.
// Its errors name the field.
func parseWindow(mw api.MaintenanceWindow) (*window, error) {
	if !windowName.MatchString(mw.Name) {
		return nil, fmt.Errorf("name %q: want 1 to 63 letters, digits and ._- starting with a letter or digit", mw.Name)
	}
	sched, err := policy.ParseWindow(mw.When)
	if err != nil {
		return nil, fmt.Errorf("when: %w", err)
	}
	sched.Name = mw.Name
	for k, v := range mw.Selector {
		if !api.ValidLabel(k, v) {
			return nil, fmt.Errorf("selector %s=%s: want letters, digits and ._-/", k, v)
		}
	}
	if _, err := budget(mw.MaxUnavailable, 1); err != nil {
		return nil, err
	}
	if mw.LeaseTTL == 0 {
		mw.LeaseTTL = api.Duration(defaultLeaseTTL)
	}
	if d := time.Duration(mw.LeaseTTL); d < time.Minute || d > 24*time.Hour {
		return nil, fmt.Errorf("lease_ttl %v: want 1m to 24h", d)
	}
	return &window{MaintenanceWindow: mw, sched: sched}, nil
}

// budget is how many hosts of a group of n may hold a lease at once under
// maxUnavailable: a count ("2"), or a percentage of the group ("20%",
// rounded down, at least 1).
func budget(maxUnavailable string, n int) (int, error) {
	bad := fmt.Errorf("max_unavailable %q: want a count of hosts (1, 2, ...) or a percentage of the group (1%% to 100%%)", maxUnavailable)
	if pct, ok := strings.CutSuffix(maxUnavailable, "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || p <= 0 || p > 100 || math.IsNaN(p) {
			return 0, bad
		}
		return max(1, int(math.Floor(p*float64(n)/100))), nil
	}
	c, err := strconv.Atoi(maxUnavailable)
	if err != nil || c < 1 {
		return 0, bad
	}
	return c, nil
}

// windowOf is the window whose group h belongs to: the first by name whose
// selector h's labels match; nil when none does. Callers hold s.mu.
func (s *Server) windowOf(h *host) *window {
	for _, w := range s.rb.windows {
		if hasLabels(h.Labels, w.Selector) {
			return w
		}
	}
	return nil
}

// groupOf returns the non-revoked hosts of w's group (w nil: the hosts no
// window covers). Callers hold s.mu.
func (s *Server) groupOf(w *window) []*host {
	var out []*host
	for _, h := range s.hosts {
		if h.RevokedAt.IsZero() && s.windowOf(h) == w {
			out = append(out, h)
		}
	}
	return out
}

// rebootRoutes are the routes of kernel updates and reboots, part of
// apiRoutes.
func (s *Server) rebootRoutes() []route {
	return []route{
		{"GET " + api.PathWindows, api.RoleViewer, s.handleWindows},
		{"PUT " + api.PathWindows + "/{name}", api.RoleOperator, s.handlePutWindow},
		{"DELETE " + api.PathWindows + "/{name}", api.RoleOperator, s.handleDeleteWindow},
		{"POST " + api.PathKernelRollouts, api.RoleOperator, s.handleCreateKernelRollout},
		{"GET " + api.PathKernelRollouts, api.RoleViewer, s.handleKernelRollouts},
		{"GET " + api.PathKernelRollouts + "/{id}", api.RoleViewer, s.handleKernelRollout},
		{"POST " + api.PathKernelRollouts + "/{id}/{action}", api.RoleOperator, s.handleKernelRolloutAction},
		{"GET " + api.PathReboots, api.RoleViewer, s.handleReboots},
		{"POST " + api.PathReboots + "/{id}/approve", api.RoleOperator, s.handleApproveReboot},
		{"POST " + api.PathRebootLease, needHost, s.handleRebootLease},
	}
}

func (s *Server) apiWindows() []api.MaintenanceWindow {
	out := make([]api.MaintenanceWindow, 0, len(s.rb.windows))
	for _, w := range s.rb.windows {
		out = append(out, w.MaintenanceWindow)
	}
	return out
}

func (s *Server) handleWindows(w http.ResponseWriter, r *http.Request) error {
	s.mu.RLock()
	out := s.apiWindows()
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePutWindow(w http.ResponseWriter, r *http.Request) error {
	var mw api.MaintenanceWindow
	if err := readJSON(r, 64<<10, &mw); err != nil {
		return err
	}
	name := r.PathValue("name")
	if mw.Name != "" && mw.Name != name {
		return errorf(http.StatusBadRequest, "bad_request", "name %q: the body names another window than the path (%s)", mw.Name, name)
	}
	mw.Name = name
	p := principalOf(r)
	mw.UpdatedAt, mw.UpdatedBy = s.now().UTC(), p.actor()
	win, err := parseWindow(mw)
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "window %s: %v", name, err)
	}
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	e := &api.AuditEntry{At: mw.UpdatedAt, Actor: p.actor(), Action: "window.set", Target: name, Detail: mustJSON(win.MaintenanceWindow)}
	err = s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.PutWindow(r.Context(), &win.MaintenanceWindow); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if err != nil {
		return internal(err)
	}
	s.mu.Lock()
	ws := []*window{win}
	for _, o := range s.rb.windows {
		if o.Name != name {
			ws = append(ws, o)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	s.rb.windows = ws
	s.mu.Unlock()
	s.lp.replanAll()
	s.log.Info("maintenance window set", "window", name, "when", win.When, "selector", win.Selector, "max_unavailable", win.MaxUnavailable)
	return writeJSON(w, http.StatusOK, win.MaintenanceWindow)
}

func (s *Server) handleDeleteWindow(w http.ResponseWriter, r *http.Request) error {
	name, p, now := r.PathValue("name"), principalOf(r), s.now().UTC()
	s.rb.op.Lock()
	defer s.rb.op.Unlock()
	e := &api.AuditEntry{At: now, Actor: p.actor(), Action: "window.delete", Target: name}
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.DeleteWindow(r.Context(), name); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found", "no maintenance window %s", name)
	}
	if err != nil {
		return internal(err)
	}
	s.mu.Lock()
	var ws []*window
	for _, o := range s.rb.windows {
		if o.Name != name {
			ws = append(ws, o)
		}
	}
	s.rb.windows = ws
	s.mu.Unlock()
	s.lp.replanAll()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var descRebootHosts = prometheus.NewDesc("stent_server_reboot_hosts",
	"Hosts by reboot state: waiting (kernel installed, no lease yet), rebooting (holding a lease), fell-back (came back on the previous kernel), blocked (no-reboot label or host-side blockers).",
	[]string{"state"}, nil)

// registerRebootMetrics adds the reboot gauges and the reboot duration
// histogram to s's registry.
func registerRebootMetrics(s *Server) {
	s.rb.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "stent_server_reboot_duration_seconds", Help: "Reboots into a new kernel, from the reboot's start to the healthy agent (BootOutcome.Duration).",
		Buckets: []float64{15, 30, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600},
	})
	s.reg.MustRegister(s.rb.duration, rebootCollector{s})
}

type rebootCollector struct{ s *Server }

func (c rebootCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descRebootHosts }

func (c rebootCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.rebootStatus(api.RebootQuery{})
	n := map[string]int{"waiting": 0, "rebooting": 0, "fell-back": 0, "blocked": 0}
	for _, h := range st.Hosts {
		switch {
		case h.State == api.KernelFellBack:
			n["fell-back"]++
		case h.Lease != "":
			n["rebooting"]++
		case len(h.Blockers) > 0:
			n["blocked"]++
		case h.State == api.KernelInstalled || h.Wait != "":
			n["waiting"]++
		}
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(descRebootHosts, prometheus.GaugeValue, float64(v), k)
	}
}
