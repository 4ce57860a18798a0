package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/bundle"
	"github.com/stent-dev/stent/store"
)

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		if !s.active.Load() {
			// A load balancer's health check sends agents elsewhere.
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "standby\n")
			return
		}
		// Healthy means able to serve, which needs a store that takes writes.
		if err := s.probeStore(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "store cannot be written: "+storeError(err).msg+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET "+api.PathMetrics, s.metricsHandler())

	for _, rt := range s.apiRoutes() {
		s.handle(mux, rt.pattern, rt.need, rt.h)
	}
}

// route is one API endpoint: its "METHOD path" pattern, the
// authentication it needs ("" none, "host", or an admin role) and its
// handler.
type route struct {
	pattern, need string
	h             handlerFunc
}

// apiRoutes is the API's route table. Every admin route has an api.Client
// method (TestAdminRoutesHaveClientMethods).
func (s *Server) apiRoutes() []route {
	rs := []route{
		{"POST " + api.PathEnroll, needNone, s.handleEnroll},
		{"POST " + api.PathSync, needHost, s.handleSync},
		{"POST " + api.PathReport, needHost, s.handleReport},
		{"GET " + api.PathBundles + "{sha}", needReader, s.handleBundle},

		{"GET " + api.PathHosts, api.RoleViewer, s.handleHosts},
		{"GET " + api.PathHosts + "/{id}", api.RoleViewer, s.handleHost},
		{"DELETE " + api.PathHosts + "/{id}", api.RoleAdmin, s.handleRevokeHost},
		{"PUT " + api.PathHosts + "/{id}/labels", api.RoleOperator, s.handleSetHostLabels},
		{"GET " + api.PathInventories, api.RoleViewer, s.handleInventories},
		{"POST " + api.PathAdminBundle, api.RoleOperator, s.handlePublish},
		{"GET " + api.PathAdminBundle, api.RoleViewer, s.handleBundles},
		{"POST " + api.PathRollouts, api.RoleOperator, s.handleCreateRollout},
		{"GET " + api.PathRollouts, api.RoleViewer, s.handleRollouts},
		{"GET " + api.PathRollouts + "/{id}", api.RoleViewer, s.handleRollout},
		{"POST " + api.PathRollouts + "/{id}/{action}", api.RoleOperator, s.handleRolloutAction},
		{"POST " + api.PathRevert, api.RoleOperator, s.handleFleetRevert},
		{"GET " + api.PathFleet, api.RoleViewer, s.handleFleet},
		{"GET " + api.PathAudit, api.RoleViewer, s.handleAudit},
		{"POST " + api.PathTokens, api.RoleAdmin, s.handleCreateToken},
		{"GET " + api.PathTokens, api.RoleAdmin, s.handleTokens},
		{"DELETE " + api.PathTokens + "/{id}", api.RoleAdmin, s.handleRevokeToken},
		{"POST " + api.PathEnrollToken, api.RoleOperator, s.handleCreateEnrollToken},
		{"GET " + api.PathEnrollToken, api.RoleOperator, s.handleEnrollTokens},
		{"DELETE " + api.PathEnrollToken + "/{id}", api.RoleOperator, s.handleRevokeEnrollToken},
		{"GET " + api.PathSettings, api.RoleViewer, s.handleSettings},
		{"PUT " + api.PathSettings, api.RoleAdmin, s.handlePutSettings},
	}
	rs = append(rs, s.rebootRoutes()...)
	rs = append(rs, s.planRoutes()...)
	rs = append(rs, s.cveRoutes()...)
	rs = append(rs, s.exposureRoutes()...)
	rs = append(rs, s.policyRoutes()...)
	rs = append(rs, s.searchRoutes()...)
	rs = append(rs, s.actionRoutes()...)
	rs = append(rs, s.factoryRoutes()...)
	return append(rs, s.feedRoutes()...)
}

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) error {
	now := s.now()
	s.mu.RLock()
	out := make([]api.Host, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, h.api(s.online(h, now)))
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].ID < out[j].Hostname+out[j].ID })
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleHost(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	s.mu.RLock()
	h := s.hosts[id]
	var out api.Host
	if h != nil {
		out = h.api(s.online(h, s.now()))
	}
	s.mu.RUnlock()
	if h == nil {
		return errorf(http.StatusNotFound, "not_found", "no host %s", id)
	}
	sh, err := s.st.GetHost(r.Context(), id)
	if err != nil {
		return internal(err)
	}
	out.Inventory = sh.Inventory
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRevokeHost(w http.ResponseWriter, r *http.Request) error {
	return s.revoke(w, r, "host.revoke", "enrolled host", func(tx *store.Tx, id string, at time.Time) error {
		return tx.RevokeHost(r.Context(), id, at)
	}, func(id string, at time.Time) {
		s.mu.Lock()
		s.revokeHostLocked(id, at)
		s.mu.Unlock()
		s.lp.removeHost(id)
		s.kickEngine()
	})
}

// bundleInspector returns the default Options.Inspect: parse with the
// bundle package and, with a keys folder, verify the signature too.
func bundleInspector(keysDir string) (func([]byte) (*api.BundleInfo, error), error) {
	var kr *bundle.Keyring
	if keysDir != "" {
		var err error
		if kr, err = bundle.LoadKeyring(keysDir); err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
	}
	return func(data []byte) (*api.BundleInfo, error) {
		b, err := bundle.Parse(data)
		if err != nil {
			return nil, err
		}
		if kr != nil {
			if err := b.Verify(kr); err != nil {
				return nil, err
			}
		}
		m := b.Manifest()
		return &api.BundleInfo{Name: m.Name, KernelRelease: m.Kernel.Release, BuildID: m.Kernel.BuildID, Level: m.Level, Replace: m.Replace, CVEs: m.CVEs}, nil
	}, nil
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBundleSize))
	if err != nil {
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "bundle: %v (limit %d bytes)", err, s.cfg.MaxBundleSize)
	}
	info, err := s.inspect(data)
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_bundle", "bundle refused: %v", err)
	}
	sum := sha256.Sum256(data)
	p := principalOf(r)
	info.SHA256, info.Size, info.Published, info.PublishedBy = hex.EncodeToString(sum[:]), int64(len(data)), s.now().UTC(), p.actor()
	var inserted bool
	e := &api.AuditEntry{At: info.Published, Actor: p.actor(), Action: "bundle.publish", Target: info.SHA256,
		Detail: mustJSON(map[string]any{"name": info.Name, "kernel_release": info.KernelRelease, "level": info.Level, "cves": info.CVEs, "size": info.Size})}
	err = s.w.do(r.Context(), func(tx *store.Tx) error {
		var err error
		if inserted, err = tx.InsertBundle(r.Context(), info, data); err != nil || !inserted {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if err != nil {
		return internal(err)
	}
	status := http.StatusOK
	s.mu.Lock()
	if inserted {
		s.bundles[info.SHA256] = info
		status = http.StatusCreated
	} else {
		info = s.bundles[info.SHA256]
	}
	s.mu.Unlock()
	if inserted {
		s.notePublished(info, data)
		s.syncPublishedFeed(r.Context())
	}
	return writeJSON(w, status, info)
}

func (s *Server) handleBundles(w http.ResponseWriter, r *http.Request) error {
	s.mu.RLock()
	out := make([]*api.BundleInfo, 0, len(s.bundles))
	for _, b := range s.bundles {
		out = append(out, b)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Published.Before(out[j].Published) })
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateRollout(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	ro, err := s.createRollout(r.Context(), principalOf(r), req)
	if err != nil {
		return err
	}
	s.mu.RLock()
	out := s.apiRollout(ro, false)
	s.mu.RUnlock()
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleRollouts(w http.ResponseWriter, r *http.Request) error {
	s.mu.RLock()
	out := make([]api.Rollout, 0, len(s.rollouts))
	for _, ro := range s.rollouts {
		out = append(out, s.apiRollout(ro, false))
	}
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRollout(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	s.mu.RLock()
	ro := s.rolloutByID[id]
	var out api.Rollout
	if ro != nil {
		out = s.apiRollout(ro, r.URL.Query().Get("hosts") != "0")
	}
	s.mu.RUnlock()
	if ro == nil {
		return errorf(http.StatusNotFound, "not_found", "no rollout %s", id)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRolloutAction(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutActionRequest
	if r.ContentLength != 0 {
		if err := readJSON(r, 64<<10, &req); err != nil {
			return err
		}
	}
	ro, err := s.rolloutAction(r.Context(), principalOf(r), r.PathValue("id"), r.PathValue("action"), req)
	if err != nil {
		return err
	}
	s.mu.RLock()
	out := s.apiRollout(ro, false)
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, out)
}

// handleFleetRevert reverts a patch everywhere: every rollout of it that is
// not reverted already turns into a revert.
func (s *Server) handleFleetRevert(w http.ResponseWriter, r *http.Request) error {
	var req api.RevertRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return errorf(http.StatusBadRequest, "bad_request", "name: the patch to revert is required")
	}
	s.mu.RLock()
	var ids []string
	for _, ro := range s.rollouts {
		if ro.Name == req.Name && ro.State != api.RolloutReverting && ro.State != api.RolloutReverted {
			ids = append(ids, ro.ID)
		}
	}
	s.mu.RUnlock()
	if len(ids) == 0 {
		return errorf(http.StatusNotFound, "not_found", "no rollout of patch %s to revert", req.Name)
	}
	p := principalOf(r)
	if err := s.audit(r.Context(), p, "fleet.revert", req.Name, map[string]any{"rollouts": ids, "reason": req.Reason}); err != nil {
		return internal(err)
	}
	out := []api.Rollout{}
	for _, id := range ids {
		ro, err := s.rolloutAction(r.Context(), p, id, "revert", api.RolloutActionRequest{Reason: req.Reason})
		var he *httpError
		if errors.As(err, &he) && he.status == http.StatusConflict {
			continue // reverted meanwhile
		}
		if err != nil {
			return err
		}
		s.mu.RLock()
		out = append(out, s.apiRollout(ro, false))
		s.mu.RUnlock()
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) fleetStatus() api.FleetStatus {
	now := s.now()
	st := api.FleetStatus{ByKernel: map[string]int{}, ByChannel: map[string]int{}, ByPatch: map[string]int{}, Rollouts: []api.Rollout{}, GeneratedAt: now.UTC()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, h := range s.hosts {
		if !h.RevokedAt.IsZero() {
			st.Revoked++
			continue
		}
		st.Hosts++
		if s.online(h, now) {
			st.Online++
		} else {
			st.Offline++
		}
		switch h.Health {
		case api.HealthOK:
			st.Healthy++
		case api.HealthDegraded:
			st.Degraded++
		}
		if h.KernelRelease != "" {
			st.ByKernel[h.KernelRelease]++
		}
		st.ByChannel[h.Channel]++
		for _, p := range h.Patches {
			if p.Enabled {
				st.ByPatch[p.Name]++
			}
		}
	}
	for _, ro := range s.rollouts {
		st.Rollouts = append(st.Rollouts, s.apiRollout(ro, false))
	}
	return st
}

func (s *Server) handleFleet(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.fleetStatus())
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.AuditFilter{Action: q.Get("action"), Target: q.Get("target")}
	f.AfterID, _ = strconv.ParseInt(q.Get("after"), 10, 64)
	f.BeforeID, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	f.Newest = q.Get("order") == "newest"
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	f.Limit = min(f.Limit, 10000)
	out, err := s.st.ListAudit(r.Context(), f)
	if err != nil {
		return internal(err)
	}
	if out == nil {
		out = []*api.AuditEntry{}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	if req.Name == "" || roleRank[req.Role] == 0 {
		return errorf(http.StatusBadRequest, "bad_request", "token: name is required and role must be viewer, operator or admin")
	}
	if req.TTL < 0 {
		return errorf(http.StatusBadRequest, "bad_request", "ttl %v: must not be negative (0 or leave it out for a token that does not expire)", time.Duration(req.TTL))
	}
	t, err := CreateAdminToken(r.Context(), s.st, req.Name, req.Role, time.Duration(req.TTL), principalOf(r).actor())
	if err != nil {
		return internal(err)
	}
	return writeJSON(w, http.StatusCreated, t)
}

func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.st.ListAdminTokens(r.Context())
	if err != nil {
		return internal(err)
	}
	out := make([]api.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, api.Token{ID: t.ID, Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Revoked: !t.RevokedAt.IsZero()})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	return s.revoke(w, r, "token.revoke", "token", func(tx *store.Tx, id string, at time.Time) error {
		return tx.RevokeAdminToken(r.Context(), id, at)
	}, s.forgetAdmins)
}

func (s *Server) handleRevokeEnrollToken(w http.ResponseWriter, r *http.Request) error {
	return s.revoke(w, r, "enroll_token.revoke", "token", func(tx *store.Tx, id string, at time.Time) error {
		return tx.RevokeEnrollToken(r.Context(), id, at)
	}, s.forgetAdmins)
}

func (s *Server) forgetAdmins(string, time.Time) { s.admins.forget() }

// revoke revokes what the path's id names (a host, a token: what) in the
// store together with its audit entry, then lets after update memory and
// caches, and answers 204.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, action, what string, revoke func(*store.Tx, string, time.Time) error, after func(id string, at time.Time)) error {
	id, p, now := r.PathValue("id"), principalOf(r), s.now().UTC()
	e := &api.AuditEntry{At: now, Actor: p.actor(), Action: action, Target: id}
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := revoke(tx, id, now); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found", "no %s %s (or already revoked)", what, id)
	}
	if err != nil {
		return internal(err)
	}
	after(id, now)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleCreateEnrollToken(w http.ResponseWriter, r *http.Request) error {
	var req api.EnrollTokenRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	if req.Name == "" || req.MaxUses < 0 {
		return errorf(http.StatusBadRequest, "bad_request", "enrollment token: name is required, max_uses must be >= 0")
	}
	if req.Channel == "" {
		req.Channel = defaultChannel
	}
	if !api.ValidLabel("channel", req.Channel) {
		return errorf(http.StatusBadRequest, "bad_request", "channel %q: want letters, digits and ._-/", req.Channel)
	}
	for k, v := range req.Labels {
		if !api.ValidLabel(k, v) {
			return errorf(http.StatusBadRequest, "bad_request", "label %s=%s: want letters, digits and ._-/", k, v)
		}
	}
	if req.TTL < 0 {
		return errorf(http.StatusBadRequest, "bad_request", "ttl %v: must not be negative (0 or leave it out for 24h)", time.Duration(req.TTL))
	}
	if req.TTL == 0 {
		req.TTL = api.Duration(24 * time.Hour)
	}
	p, now := principalOf(r), s.now().UTC()
	secret := newSecret(prefixEnroll)
	et := &store.EnrollToken{ID: newID("enr_"), Name: req.Name, Hash: hashToken(secret), Channel: req.Channel, Labels: req.Labels,
		CreatedAt: now, CreatedBy: p.actor(), ExpiresAt: now.Add(time.Duration(req.TTL)), MaxUses: req.MaxUses}
	e := &api.AuditEntry{At: now, Actor: p.actor(), Action: "enroll_token.create", Target: et.ID,
		Detail: mustJSON(map[string]any{"name": et.Name, "channel": et.Channel, "labels": et.Labels, "expires_at": et.ExpiresAt, "max_uses": et.MaxUses})}
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.InsertEnrollToken(r.Context(), et); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if err != nil {
		return internal(err)
	}
	return writeJSON(w, http.StatusCreated, api.Token{ID: et.ID, Name: et.Name, Channel: et.Channel, Labels: et.Labels,
		MaxUses: et.MaxUses, CreatedAt: now, ExpiresAt: et.ExpiresAt, Secret: secret})
}

func (s *Server) handleEnrollTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.st.ListEnrollTokens(r.Context())
	if err != nil {
		return internal(err)
	}
	out := make([]api.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, api.Token{ID: t.ID, Name: t.Name, Channel: t.Channel, Labels: t.Labels, MaxUses: t.MaxUses, Uses: t.Uses,
			CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Revoked: !t.RevokedAt.IsZero()})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) error {
	s.mu.RLock()
	out := s.settings
	s.mu.RUnlock()
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePutSettings(w http.ResponseWriter, r *http.Request) error {
	var req api.Settings
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	d := time.Duration(req.CheckinInterval)
	if d < 100*time.Millisecond || d > time.Hour {
		return errorf(http.StatusBadRequest, "bad_request", "checkin_interval %v: want 100ms to 1h", d)
	}
	p := principalOf(r)
	e := &api.AuditEntry{At: s.now().UTC(), Actor: p.actor(), Action: "settings.update", Detail: mustJSON(req)}
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.PutSetting(r.Context(), "checkin_interval", d.String()); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if err != nil {
		return internal(err)
	}
	// Wake every held long-poll so agents learn the new interval now, not
	// at the end of the old one.
	s.mu.Lock()
	s.settings = req
	for _, h := range s.hosts {
		close(h.wake)
		h.wake = make(chan struct{})
	}
	s.mu.Unlock()
	return writeJSON(w, http.StatusOK, req)
}
