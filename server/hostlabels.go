package server

import (
	"errors"
	"maps"
	"net/http"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// handleSetHostLabels replaces an enrolled host's labels (an operator's
// correction of its enrollment token's). What labels select follows at
// once: the host's maintenance window, its plan (re-planned now, not at
// its next inventory), and the running rollouts whose selector it now
// matches, which take it into their current wave as they take a host
// that changed kernel. Rollouts it no longer matches keep it.
func (s *Server) handleSetHostLabels(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req api.HostLabelsRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	for k, v := range req.Labels {
		if !api.ValidLabel(k, v) {
			return errorf(http.StatusBadRequest, "bad_request", "label %s=%s: want letters, digits and ._-/", k, v)
		}
	}
	if len(req.Reason) > 1024 {
		return errorf(http.StatusBadRequest, "bad_request", "reason: at most 1024 bytes")
	}
	labels := maps.Clone(req.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	p, now := principalOf(r), s.now().UTC()
	s.mu.RLock()
	h := s.hosts[id]
	var old map[string]string
	if h != nil {
		old = h.Labels
	}
	s.mu.RUnlock()
	if h == nil || !h.RevokedAt.IsZero() {
		return errorf(http.StatusNotFound, "not_found", "no enrolled host %s (or it is revoked)", id)
	}
	e := &api.AuditEntry{At: now, Actor: p.actor(), Action: "host.labels", Target: id,
		Detail: mustJSON(map[string]any{"labels": labels, "previous": old, "reason": req.Reason})}
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.SetHostLabels(r.Context(), id, labels); err != nil {
			return err
		}
		return tx.InsertAudit(r.Context(), e)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found", "no enrolled host %s (or it is revoked)", id)
	}
	if err != nil {
		return internal(err)
	}
	s.mu.Lock()
	h.Labels = labels // a new map: readers may hold the old one
	s.hostsGen++
	rows := s.adoptLocked(h, now)
	if len(rows) > 0 {
		s.recompute(h)
	}
	out := h.api(s.online(h, now))
	s.mu.Unlock()
	if len(rows) > 0 {
		err := s.w.do(r.Context(), func(tx *store.Tx) error {
			for i := range rows {
				if err := tx.PutRolloutHost(r.Context(), &rows[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return internal(err)
		}
	}
	s.lp.replanHost(id) // its window may be another's now
	s.kickEngine()
	s.log.Info("host labels set", "host", id, "labels", labels, "by", p.actor())
	return writeJSON(w, http.StatusOK, out)
}
