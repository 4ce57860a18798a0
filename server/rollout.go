package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// Rollout defaults.
const (
	defaultChannel       = "stable"
	defaultMaxFailurePct = 5
	defaultOfflineAfter  = 5 * time.Minute
)

var defaultWaves = []int{10, 50, 100}

// planWaves orders the target and gives each host its wave: hosts labelled
// canary=true first, the rest in an order that is pseudo-random but stable
// for the rollout (a hash of rollout and host id). The canary wave holds
// canary hosts; wave i holds hosts up to waves[i-1] percent of the target.
func planWaves(rolloutID string, target []*host, canary int, waves []int) map[string]int {
	key := func(h *host) uint64 {
		sum := sha256.Sum256([]byte(rolloutID + "/" + h.ID))
		return binary.BigEndian.Uint64(sum[:8])
	}
	sort.Slice(target, func(i, j int) bool {
		ci, cj := target[i].Labels["canary"] == "true", target[j].Labels["canary"] == "true"
		if ci != cj {
			return ci
		}
		return key(target[i]) < key(target[j])
	})
	n := len(target)
	bounds := []int{min(canary, n)}
	for _, pct := range waves {
		b := int(math.Ceil(float64(pct) * float64(n) / 100))
		bounds = append(bounds, max(b, bounds[len(bounds)-1]))
	}
	out := make(map[string]int, n)
	w := 0
	for i, h := range target {
		for w < len(bounds)-1 && i >= bounds[w] {
			w++
		}
		out[h.ID] = w
	}
	return out
}

// createRollout validates req, plans the waves, stores everything and
// releases the canary wave.
func (s *Server) createRollout(ctx context.Context, p *principal, req api.RolloutRequest) (*rollout, error) {
	if req.Channel == "" {
		req.Channel = defaultChannel
	}
	if len(req.OnlyHosts) > 100000 {
		return nil, errorf(http.StatusBadRequest, "bad_request", "only_hosts: %d hosts, at most 100000", len(req.OnlyHosts))
	}
	if len(req.Waves) == 0 {
		req.Waves = defaultWaves
	}
	prev := 0
	for _, w := range req.Waves {
		if w <= prev || w > 100 {
			return nil, errorf(http.StatusBadRequest, "bad_request", "waves %v: want increasing percentages ending at 100", req.Waves)
		}
		prev = w
	}
	if prev != 100 {
		return nil, errorf(http.StatusBadRequest, "bad_request", "waves %v: the last wave must be 100", req.Waves)
	}
	maxFail := float64(defaultMaxFailurePct)
	if req.MaxFailurePct != nil {
		maxFail = *req.MaxFailurePct // 0 is a threshold: halt on the first failure
	}
	if maxFail < 0 || maxFail > 100 || req.Canary < 0 {
		return nil, errorf(http.StatusBadRequest, "bad_request", "max_failure_pct must be 0..100 and canary >= 0")
	}
	if req.OfflineAfter == 0 {
		req.OfflineAfter = api.Duration(defaultOfflineAfter)
	}
	for k, v := range req.Selector {
		if !api.ValidLabel(k, v) {
			return nil, errorf(http.StatusBadRequest, "bad_request", "selector %s=%s: want letters, digits and ._-/", k, v)
		}
	}
	now := s.now().UTC()
	s.mu.Lock()
	b := s.bundles[req.Bundle]
	if b == nil {
		s.mu.Unlock()
		return nil, errorf(http.StatusNotFound, "not_found", "no published bundle %s; publish it first", req.Bundle)
	}
	s.lastSeq++
	sr := &store.Rollout{
		ID: newID("r_"), Seq: s.lastSeq, Bundle: b.SHA256, Name: b.Name, KernelRelease: b.KernelRelease, Level: b.Level,
		Channel: req.Channel, Selector: req.Selector, Waves: req.Waves, MaxFailurePct: maxFail,
		OfflineAfter: time.Duration(req.OfflineAfter), State: api.RolloutRunning, CreatedAt: now, UpdatedAt: now, CreatedBy: p.actor(),
		OnlyHosts: req.OnlyHosts,
	}
	probe := &rollout{Rollout: *sr, replace: b.Replace, buildID: b.BuildID, only: onlySet(sr.OnlyHosts)}
	var target []*host
	for _, h := range s.hosts {
		if eligible(probe, h) {
			target = append(target, h)
		}
	}
	if req.Canary == 0 {
		req.Canary = max(1, int(math.Ceil(float64(len(target))/100)))
	}
	sr.Canary = req.Canary
	plan := planWaves(sr.ID, target, req.Canary, req.Waves)
	s.mu.Unlock()

	rows := make([]store.RolloutHost, 0, len(plan))
	for id, w := range plan {
		rows = append(rows, store.RolloutHost{RolloutID: sr.ID, HostID: id, Wave: w, State: api.HostPending, UpdatedAt: now})
	}
	audit := &api.AuditEntry{At: now, Actor: p.actor(), Action: "rollout.create", Target: sr.ID, Detail: mustJSON(map[string]any{
		"bundle": b.SHA256, "name": b.Name, "channel": sr.Channel, "selector": sr.Selector, "canary": sr.Canary,
		"waves": sr.Waves, "max_failure_pct": sr.MaxFailurePct, "only_hosts": len(sr.OnlyHosts), "target": len(rows)})}
	err := s.w.do(ctx, func(tx *store.Tx) error {
		if err := tx.InsertRollout(ctx, sr); err != nil {
			return err
		}
		for i := range rows {
			if err := tx.PutRolloutHost(ctx, &rows[i]); err != nil {
				return err
			}
		}
		return tx.InsertAudit(ctx, audit)
	})
	if err != nil {
		return nil, internal(err)
	}
	s.mu.Lock()
	r := s.addRollout(sr)
	for i := range rows {
		s.attach(r, s.hosts[rows[i].HostID], &rows[i])
	}
	for _, rh := range r.waves[0] {
		s.recompute(rh.h)
	}
	s.mu.Unlock()
	s.log.Info("rollout started", "rollout", r.ID, "bundle", b.SHA256, "name", b.Name, "target", len(rows), "canary", len(r.waves[0]))
	s.kickEngine()
	return r, nil
}

// engine re-evaluates running rollouts on every report and health change
// (kick) and on a timer, releasing waves, halting and completing them.
func (s *Server) engine(ctx context.Context) {
	t := time.NewTicker(s.cfg.EngineTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		s.mu.RLock()
		rs := append([]*rollout(nil), s.rollouts...)
		s.mu.RUnlock()
		for _, r := range rs {
			if err := s.step(ctx, r); err != nil && ctx.Err() == nil {
				s.log.Warn("rollout step failed", "rollout", r.ID, "err", err)
			}
		}
		if err := s.stepKernel(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("kernel rollout step failed", "err", err)
		}
		// Coalesce the flood of kicks during a big wave into a step every
		// few milliseconds.
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tally counts the released hosts of r: failed ones, and those the current
// wave still waits for.
func (s *Server) tally(r *rollout, now time.Time) (released, failed, waiting int) {
	for w := 0; w <= r.Wave && w < len(r.waves); w++ {
		for _, rh := range r.waves[w] {
			released++
			switch {
			case rh.State == api.HostFailed || rh.State == api.HostRefused:
				failed++
			case rh.State == api.HostHealthy, rh.skip, !rh.h.RevokedAt.IsZero(), rh.h.KernelRelease != r.KernelRelease:
			case now.Sub(rh.h.LastSeen) > r.OfflineAfter:
				// Silent for too long: do not hold the fleet for it; it gets
				// the patch when it comes back.
			default:
				waiting++
			}
		}
	}
	return
}

// allowedFailures is how many of released hosts may fail before a rollout
// with threshold pct halts: pct percent, rounded down. pct*released is
// formed first: pct/100 is inexact in binary (0.29*100 is 28.999...), which
// would round a whole host away.
func allowedFailures(pct float64, released int) int {
	return int(math.Floor(pct * float64(released) / 100))
}

// step moves one rollout forward if it can.
func (s *Server) step(ctx context.Context, r *rollout) error {
	r.op.Lock()
	defer r.op.Unlock()
	now := s.now().UTC()
	s.mu.RLock()
	next := r.Rollout
	var action string
	switch r.State {
	case api.RolloutRunning:
		released, failed, waiting := s.tally(r, now)
		allowed := allowedFailures(r.MaxFailurePct, released)
		switch {
		case failed > allowed:
			next.State, action = api.RolloutHalted, "rollout.halt"
			next.Reason = fmt.Sprintf("%d of %d released hosts failed; at most %d (%.1f%%) allowed", failed, released, allowed, r.MaxFailurePct)
		case waiting > 0:
		case r.Wave >= len(r.Waves):
			next.State, action = api.RolloutCompleted, "rollout.complete"
		default:
			next.Wave++
			for next.Wave < len(r.Waves) && len(r.waves[next.Wave]) == 0 {
				next.Wave++ // nothing to wait for in an empty wave
			}
			action = "rollout.wave"
		}
	case api.RolloutReverting:
		pending := 0
		for _, rh := range r.hosts {
			if (rh.Wave <= r.Wave || rh.State != api.HostPending) && rh.State != api.HostReverted &&
				rh.h.RevokedAt.IsZero() && !rh.skip && now.Sub(rh.h.LastSeen) <= r.OfflineAfter {
				pending++
			}
		}
		if pending == 0 {
			next.State, action = api.RolloutReverted, "rollout.reverted"
		}
	}
	s.mu.RUnlock()
	if action == "" {
		return nil
	}
	next.UpdatedAt = now
	detail := map[string]any{"state": next.State, "wave": next.Wave}
	if next.Reason != r.Reason {
		detail["reason"] = next.Reason
	}
	return s.commitRollout(ctx, r, &next, &principal{}, action, detail)
}

// commitRollout persists a rollout change with its audit entry, then
// applies it in memory and wakes the hosts whose desired state changed.
// Callers hold r.op.
func (s *Server) commitRollout(ctx context.Context, r *rollout, next *store.Rollout, p *principal, action string, detail any) error {
	actor := "server"
	if p.host != nil || p.admin != nil {
		actor = p.actor()
	}
	e := &api.AuditEntry{At: next.UpdatedAt, Actor: actor, Action: action, Target: r.ID, Detail: mustJSON(detail)}
	err := s.w.do(ctx, func(tx *store.Tx) error {
		if err := tx.UpdateRollout(ctx, next); err != nil {
			return err
		}
		return tx.InsertAudit(ctx, e)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	r.Rollout = *next
	woken := 0
	for _, rh := range r.hosts {
		if s.recompute(rh.h) {
			woken++
		}
	}
	s.mu.Unlock()
	s.log.Info("rollout "+action, "rollout", r.ID, "state", next.State, "wave", next.Wave, "reason", next.Reason, "woken", woken)
	return nil
}

// rolloutAction pauses, resumes or reverts a rollout for an operator.
func (s *Server) rolloutAction(ctx context.Context, p *principal, id, action string, req api.RolloutActionRequest) (*rollout, error) {
	s.mu.RLock()
	r := s.rolloutByID[id]
	s.mu.RUnlock()
	if r == nil {
		return nil, errorf(http.StatusNotFound, "not_found", "no rollout %s", id)
	}
	r.op.Lock()
	defer r.op.Unlock()
	s.mu.RLock()
	next := r.Rollout
	s.mu.RUnlock()
	bad := func() error {
		return errorf(http.StatusConflict, "conflict", "rollout %s is %s; cannot %s it", id, next.State, action)
	}
	switch action {
	case "pause":
		if next.State != api.RolloutRunning {
			return nil, bad()
		}
		next.State = api.RolloutPaused
	case "resume":
		if next.State != api.RolloutPaused && next.State != api.RolloutHalted {
			return nil, bad()
		}
		next.State = api.RolloutRunning
		if req.MaxFailurePct != nil {
			if *req.MaxFailurePct < 0 || *req.MaxFailurePct > 100 {
				return nil, errorf(http.StatusBadRequest, "bad_request", "max_failure_pct must be 0..100")
			}
			next.MaxFailurePct = *req.MaxFailurePct
		}
	case "revert":
		if next.State == api.RolloutReverting || next.State == api.RolloutReverted {
			return nil, bad()
		}
		next.State = api.RolloutReverting
	default:
		return nil, errorf(http.StatusNotFound, "not_found", "unknown rollout action %q: want pause, resume or revert", action)
	}
	next.Reason = req.Reason
	next.UpdatedAt = s.now().UTC()
	detail := map[string]any{"state": next.State, "reason": req.Reason, "max_failure_pct": next.MaxFailurePct}
	if err := s.commitRollout(ctx, r, &next, p, "rollout."+action, detail); err != nil {
		return nil, internal(err)
	}
	s.kickEngine()
	return r, nil
}

// apiRollout renders r; hosts adds the per-host rows. Callers hold s.mu.
func (s *Server) apiRollout(r *rollout, withHosts bool) api.Rollout {
	out := api.Rollout{
		ID: r.ID, Bundle: r.Bundle, Name: r.Name, KernelRelease: r.KernelRelease, Level: r.Level, Channel: r.Channel,
		Selector: r.Selector, OnlyHosts: r.OnlyHosts, Canary: r.Canary, Waves: r.Waves, MaxFailurePct: r.MaxFailurePct,
		OfflineAfter: api.Duration(r.OfflineAfter), State: r.State, Wave: r.Wave, Reason: r.Reason,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, CreatedBy: r.CreatedBy,
	}
	c := &out.Counts
	for _, rh := range r.hosts {
		c.Target++
		st := rh.State
		if st == api.HostPending && rh.Wave <= r.Wave {
			st = api.HostReleased
		}
		switch st {
		case api.HostPending:
			c.Pending++
		case api.HostReleased:
			c.Released++
		case api.HostApplied:
			c.Applied++
		case api.HostHealthy:
			c.Applied++
			c.Healthy++
		case api.HostFailed, api.HostRefused:
			c.Failed++
		case api.HostReverted:
			c.Reverted++
		}
		if withHosts {
			out.Hosts = append(out.Hosts, api.RolloutHost{HostID: rh.HostID, Hostname: rh.h.Hostname, Wave: rh.Wave, State: st, Error: rh.Error, UpdatedAt: rh.UpdatedAt})
		}
	}
	sort.Slice(out.Hosts, func(i, j int) bool {
		a, b := out.Hosts[i], out.Hosts[j]
		if a.Wave != b.Wave {
			return a.Wave < b.Wave
		}
		return a.HostID < b.HostID
	})
	return out
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only ever called on maps of plain values
	}
	return b
}
