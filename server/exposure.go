package server

import (
	"context"
	"net/http"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/store"
)

// The fleet's exposure over time. The live plan is a picture of now; the
// dashboard's overview also draws how it got here. exposureLoop takes a
// small snapshot of the plan (hosts exposed and past a deadline, open CVEs,
// open (host, CVE) pairs per severity) whenever the plan changed, at most
// once per Config.ExposureInterval, and deletes the snapshots older than
// Config.ExposureRetention. A restart keeps the interval: the newest
// stored snapshot's time counts.

// exposureCheckEvery is how often the loop looks whether the plan changed.
const exposureCheckEvery = 30 * time.Second

func (s *Server) exposureLoop(ctx context.Context) {
	interval, retention := s.cfg.ExposureInterval, s.cfg.ExposureRetention
	if interval <= 0 {
		interval = DefaultConfig().ExposureInterval
	}
	if retention <= 0 {
		retention = DefaultConfig().ExposureRetention
	}
	var last time.Time
	if ps, err := s.st.ListExposure(ctx, time.Time{}, 1); err == nil && len(ps) == 1 {
		last = ps[0].At
	} else if err != nil && ctx.Err() == nil {
		s.log.Warn("newest exposure snapshot not read", "err", err)
	}
	var lastFP uint64
	t := time.NewTicker(min(exposureCheckEvery, interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.now().UTC()
		if now.Sub(last) < interval {
			continue
		}
		fp := s.planFingerprint()
		if fp == lastFP {
			continue
		}
		p, ok := s.exposureSnapshot(now)
		if !ok {
			continue // no plan yet: nothing to record
		}
		err := s.w.do(ctx, func(tx *store.Tx) error {
			if err := tx.InsertExposure(ctx, p); err != nil {
				return err
			}
			_, err := tx.PruneExposure(ctx, now.Add(-retention))
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("exposure snapshot not stored", "err", err)
			}
			continue
		}
		last, lastFP = now, fp
	}
}

// exposureSnapshot counts the current plan's exposure; false when there
// is no plan.
func (s *Server) exposureSnapshot(at time.Time) (*api.ExposurePoint, bool) {
	idx := s.cveIndex()
	if idx.err != "" || len(idx.hosts) == 0 {
		return nil, false
	}
	p := &api.ExposurePoint{At: at, Hosts: len(idx.hosts), Exposed: idx.exposed, Overdue: idx.overdue, CVEs: len(idx.list), Pairs: map[string]int{}}
	for k, v := range idx.pairs {
		p.Pairs[k] = v
	}
	return p, true
}

func (s *Server) exposureRoutes() []route {
	return []route{
		{"GET " + api.PathExposure, api.RoleViewer, s.handleExposure},
	}
}

// handleExposure serves the stored snapshots.
func (s *Server) handleExposure(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "since %q: want a time as RFC 3339, like 2026-11-23T06:00:00Z", v)
		}
		since = t
	}
	_, limit, err := pageParams(r, api.ExposureLimit, api.ExposureLimit)
	if err != nil {
		return err
	}
	ps, err := s.st.ListExposure(r.Context(), since, limit)
	if err != nil {
		return internal(err)
	}
	if ps == nil {
		ps = []api.ExposurePoint{}
	}
	out := &api.ExposureHistory{Interval: api.Duration(s.cfg.ExposureInterval), Retention: api.Duration(s.cfg.ExposureRetention), Points: ps}
	if out.Interval <= 0 {
		out.Interval = api.Duration(DefaultConfig().ExposureInterval)
	}
	if out.Retention <= 0 {
		out.Retention = api.Duration(DefaultConfig().ExposureRetention)
	}
	return writeJSON(w, http.StatusOK, out)
}
