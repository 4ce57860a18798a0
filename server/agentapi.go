package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/inventory"
	"github.com/stent-dev/stent/store"
)

// handleSync is the agent's one regular call: it records the check-in and,
// when the agent already has the current desired state (?etag=) and asks
// to wait (?wait=), holds the request until the desired state changes or
// the wait is over. Agents are therefore told about a new rollout wave the
// moment it is released, without polling.
func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) error {
	h := principalOf(r).host
	var c api.Checkin
	if err := readJSON(r, 1<<20, &c); err != nil {
		return err
	}
	if err := checkCheckin(&c); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "check-in: %v", err)
	}
	if err := checkKernelCheckin(c.Kernel); err != nil {
		return err
	}
	// The planner reads stored inventories with the same decoder: one it
	// cannot read must not get in (it would fail "stent plan" for the fleet).
	var inv *inventory.Inventory
	if len(c.Inventory) > 0 {
		var err error
		if inv, err = inventory.Decode("in the check-in", bytes.NewReader(c.Inventory)); err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "check-in: %v", err)
		}
	}
	// The body is in: no read deadline while the long-poll is held.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	etag := r.URL.Query().Get("etag")
	now := s.now().UTC()

	s.mu.Lock()
	interval := time.Duration(s.settings.CheckinInterval)
	kernelChanged := h.KernelRelease != c.KernelRelease || h.BuildID != c.BuildID
	if c.Hostname != "" && c.Hostname != h.Hostname {
		// A host cannot take another enrolled host's name: it keeps its own.
		if o := s.hostnamed(c.Hostname, h); o != nil {
			s.log.Warn("host renamed itself to another host's name; keeping its name", "host", h.ID, "hostname", h.Hostname,
				"wanted", c.Hostname, "taken_by", o.ID)
			c.Hostname = h.Hostname
		} else {
			h.Hostname = c.Hostname
		}
	}
	if c.Hostname == "" {
		c.Hostname = h.Hostname
	}
	h.LastSeen, h.KernelRelease, h.BuildID, h.BootID = now, c.KernelRelease, c.BuildID, c.BootID
	h.AgentVersion, h.Health, h.HealthDetail, h.Patches = c.AgentVersion, c.Health, c.HealthDetail, c.Patches
	var rows []store.RolloutHost
	if kernelChanged && c.KernelRelease != "" {
		rows = s.adoptLocked(h, now)
	}
	changedRows := s.healthLocked(h, now)
	rows = append(rows, changedRows...)
	if kernelChanged || len(rows) > 0 {
		s.recompute(h)
	}
	ci := &store.Checkin{HostID: h.ID, At: now, Checkin: c}
	s.mu.Unlock()

	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		if err := tx.SaveCheckin(r.Context(), ci); err != nil {
			return err
		}
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
	s.met.checkins.Inc()
	if inv != nil {
		s.lp.setInventory(h.ID, inv) // re-plans the host's kernel situation
	}
	if err := s.syncKernel(r.Context(), h, &c); err != nil {
		return internal(err)
	}
	if len(changedRows) > 0 {
		s.kickEngine()
	}

	s.mu.RLock()
	desired, wake := h.desired, h.wake
	s.mu.RUnlock()
	if wait > 0 && etag == desired.ETag {
		// Hold a little less than asked, spread by ±10% so that agents
		// started together do not keep checking in together.
		hold := min(wait, interval)
		hold = hold - hold/10 + time.Duration(rand.Int64N(int64(hold/5)+1))
		t := time.NewTimer(hold)
		s.polls.Add(1)
		select {
		case <-wake:
		case <-t.C:
		case <-r.Context().Done():
		}
		s.polls.Add(-1)
		t.Stop()
		if r.Context().Err() != nil {
			return nil // agent gone or server stopping
		}
		s.mu.RLock()
		desired = h.desired
		interval = time.Duration(s.settings.CheckinInterval)
		s.mu.RUnlock()
	}
	return writeJSON(w, http.StatusOK, api.SyncResponse{Desired: desired, CheckinInterval: api.Duration(interval), ServerTime: now})
}

// healthLocked moves h's applied rollout rows to healthy (or failed) on a
// check-in made after the apply was reported, and returns the rows changed.
func (s *Server) healthLocked(h *host, now time.Time) []store.RolloutHost {
	var out []store.RolloutHost
	for _, rh := range h.refs {
		if rh.State != api.HostApplied || rh.skip || !now.After(rh.AppliedAt) {
			continue
		}
		switch rh.r.State {
		case api.RolloutReverting, api.RolloutReverted:
			continue
		}
		enabled, transition := hasPatch(h.Patches, rh.r.Name)
		switch {
		case h.Health == api.HealthDegraded:
			rh.State, rh.Error = api.HostFailed, "unhealthy after apply: "+h.HealthDetail
		case h.Health != api.HealthOK || transition:
			continue // not checked yet, or still switching tasks over
		case enabled:
			rh.State, rh.Error = api.HostHealthy, ""
		default:
			rh.State, rh.Error = api.HostFailed, "patch "+rh.r.Name+" not enabled after apply"
		}
		rh.UpdatedAt = now
		out = append(out, rh.RolloutHost)
	}
	return out
}

// handleReport records what an agent did, once per request id.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) error {
	h := principalOf(r).host
	var rep api.Report
	if err := readJSON(r, 64<<10, &rep); err != nil {
		return err
	}
	if err := checkReport(&rep); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "report: %v", err)
	}
	switch rep.Action {
	case api.ActionApply, api.ActionRevert, api.ActionReboot:
	case api.ActionKernelInstall, api.ActionKernelBoot:
		return s.handleKernelReport(w, r, h, &rep)
	default:
		return errorf(http.StatusBadRequest, "bad_request", "report: action %q: want apply, revert or reboot", rep.Action)
	}
	switch rep.Result {
	case api.ResultOK, api.ResultFailed, api.ResultRefused:
	default:
		return errorf(http.StatusBadRequest, "bad_request", "report: result %q: want ok, failed or refused", rep.Result)
	}
	now := s.now().UTC()
	if ok, wait := s.reportLimit.allow(h.ID, now, reportBurst, reportEvery); !ok {
		return errorf(http.StatusTooManyRequests, "rate_limited", "report: more than %d reports from this host in a short time; send it again in %s", reportBurst, wait.Round(time.Second))
	}

	// Work out the row change now; it is written only if the report is new.
	s.mu.RLock()
	var row *store.RolloutHost
	var rh *rolloutHost
	if rep.Rollout != "" {
		if r := s.rolloutByID[rep.Rollout]; r != nil {
			rh = r.hosts[h.ID]
		}
		if rh == nil {
			s.mu.RUnlock()
			// Only the host's own rollouts: a report about any other is
			// not stored (it would be one more row a host could add).
			return errorf(http.StatusNotFound, "not_found", "report: rollout %s: this host is not part of it", rep.Rollout)
		}
	}
	// A host not released yet was never told to act: its report is
	// recorded and changes nothing (docs/server.md).
	if rh != nil && (rh.Wave <= rh.r.Wave || rh.State != api.HostPending) {
		nr := rh.RolloutHost
		switch {
		case rep.Action == api.ActionApply && rep.Result == api.ResultOK:
			if nr.State != api.HostHealthy {
				nr.State, nr.AppliedAt, nr.Error = api.HostApplied, now, ""
			}
		case rep.Action == api.ActionApply && rep.Result == api.ResultRefused:
			nr.State, nr.Error = api.HostRefused, rep.Error
		case rep.Action == api.ActionApply:
			nr.State, nr.Error = api.HostFailed, rep.Error
		case rep.Action == api.ActionRevert && rep.Result == api.ResultOK:
			nr.State, nr.Error = api.HostReverted, ""
		case rep.Action == api.ActionRevert:
			nr.State, nr.Error = api.HostFailed, "revert: "+rep.Error
		}
		nr.UpdatedAt = now
		row = &nr
	}
	s.mu.RUnlock()

	var inserted bool
	audit := &api.AuditEntry{At: now, Actor: "host:" + h.ID, Action: "host." + rep.Action, Target: h.ID}
	audit.Detail = mustJSON(map[string]any{"rollout": rep.Rollout, "name": rep.Name, "bundle": rep.Bundle,
		"result": rep.Result, "error": rep.Error, "request_id": rep.RequestID, "at": rep.At})
	err := s.w.do(r.Context(), func(tx *store.Tx) error {
		var err error
		if inserted, err = tx.InsertReport(r.Context(), h.ID, &rep, now); err != nil || !inserted {
			return err
		}
		if row != nil {
			if err := tx.PutRolloutHost(r.Context(), row); err != nil {
				return err
			}
		}
		if err := tx.InsertAudit(r.Context(), audit); err != nil {
			return err
		}
		return tx.PruneHost(r.Context(), h.ID, hostRecordsKept)
	})
	if err != nil {
		return internal(err)
	}
	s.met.reports.WithLabelValues(rep.Action, rep.Result).Inc()
	if inserted && row != nil {
		s.mu.Lock()
		rh.RolloutHost = *row
		if s.recompute(h) {
			s.log.Debug("desired state changed by report", "host", h.ID)
		}
		s.mu.Unlock()
		s.kickEngine()
	}
	if inserted {
		s.log.Info("host report", "host", h.ID, "action", rep.Action, "rollout", rep.Rollout, "result", rep.Result, "error", rep.Error)
	}
	return writeJSON(w, http.StatusOK, api.ReportResponse{Duplicate: !inserted})
}

// hostRecordsKept is how many reports, and how many audit entries, the
// server keeps per host: the newest; older ones are deleted.
const hostRecordsKept = 1000

// handleBundle serves a published bundle's bytes with Range support, so an
// interrupted download resumes where it stopped. Admin tokens read any
// bundle; a host reads only the bundles its current desired state tells it
// to apply, and gets the same 404 for any other bundle as for one that does
// not exist, so it cannot probe what is published.
func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request) error {
	sha := r.PathValue("sha")
	h := principalOf(r).host
	s.mu.RLock()
	b, data := s.bundles[sha], s.blobs[sha]
	if h != nil && !wantsBundle(h, sha) {
		b = nil
	}
	s.mu.RUnlock()
	if b == nil {
		return errorf(http.StatusNotFound, "not_found", "no bundle %s", sha)
	}
	if data == nil {
		var err error
		if data, err = s.st.BundleData(r.Context(), sha); err != nil {
			return internal(err)
		}
		s.mu.Lock()
		s.blobs[sha] = data
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", strconv.Quote(sha))
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, sha+".stb", b.Published, bytes.NewReader(data))
	s.met.bundleBytes.Add(float64(cw.n))
	return nil
}

// wantsBundle reports whether h's desired state has it apply bundle sha:
// the bundles of the rollouts it is released in (including an older level
// it goes back to when a newer one is reverted; a revert itself downloads
// nothing). Callers hold s.mu.
func wantsBundle(h *host, sha string) bool {
	for _, p := range h.desired.Patches {
		if p.Action == api.ActionApply && p.Bundle == sha {
			return true
		}
	}
	return false
}

func (s *Server) kickEngine() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// hostnamed returns the enrolled (not revoked) host other than self named
// name, or nil. Callers hold s.mu.
func (s *Server) hostnamed(name string, self *host) *host {
	for _, o := range s.hosts {
		if o != self && o.RevokedAt.IsZero() && o.Hostname == name {
			return o
		}
	}
	return nil
}

// checkCheckin holds every field a host sends on a check-in to what it can
// legitimately be (the inventory is checked by its decoder).
func checkCheckin(c *api.Checkin) error {
	if c.Hostname != "" {
		if err := api.CheckHostname(c.Hostname); err != nil {
			return err
		}
	}
	if err := api.CheckHealth(c.Health); err != nil {
		return err
	}
	if len(c.HealthDetail) > api.MaxHealthDetail {
		return fmt.Errorf("health_detail: %d bytes, at most %d", len(c.HealthDetail), api.MaxHealthDetail)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"kernel_release", c.KernelRelease, api.MaxRelease}, {"build_id", c.BuildID, api.MaxBuildID}, {"boot_id", c.BootID, api.MaxBootID},
		{"agent_version", c.AgentVersion, api.MaxAgentVersion}, {"applied_etag", c.AppliedETag, 64},
	} {
		if err := api.CheckToken(f.name, f.v, f.max, true); err != nil {
			return err
		}
	}
	if len(c.Patches) > api.MaxPatches {
		return fmt.Errorf("patches: %d, at most %d", len(c.Patches), api.MaxPatches)
	}
	for i, p := range c.Patches {
		if err := api.CheckPatchName(p.Name); err != nil {
			return fmt.Errorf("patches[%d]: %w", i, err)
		}
		if err := api.CheckToken(fmt.Sprintf("patches[%d].bundle", i), p.Bundle, api.MaxSHA256, true); err != nil {
			return err
		}
	}
	return nil
}

// checkReport holds every field of a report to what it can legitimately be.
func checkReport(rep *api.Report) error {
	if err := api.CheckToken("request_id", rep.RequestID, api.MaxRequestID, false); err != nil {
		return err
	}
	switch {
	case rep.Name == "":
	case rep.Action == api.ActionApply || rep.Action == api.ActionRevert:
		if err := api.CheckPatchName(rep.Name); err != nil {
			return err
		}
	default: // a kernel release, a package version
		if err := api.CheckToken("name", rep.Name, 128, true); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"rollout", rep.Rollout, api.MaxRolloutID}, {"bundle", rep.Bundle, api.MaxSHA256}, {"boot_id", rep.BootID, api.MaxBootID}} {
		if err := api.CheckToken(f.name, f.v, f.max, true); err != nil {
			return err
		}
	}
	if len(rep.Error) > api.MaxReportError {
		return fmt.Errorf("error: %d bytes, at most %d", len(rep.Error), api.MaxReportError)
	}
	return nil
}
