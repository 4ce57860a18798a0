package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stent-dev/stent/api"
)

// metrics are the server's Prometheus metrics. Counters and histograms are
// updated as things happen; fleet gauges are computed from memory at
// scrape time by fleetCollector.
type metrics struct {
	apiLatency  *prometheus.HistogramVec
	checkins    prometheus.Counter
	reports     *prometheus.CounterVec
	bundleBytes prometheus.Counter
	dbCommit    prometheus.Histogram
	dbBatch     prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stent_server_api_request_duration_seconds", Help: "API request latency by route and status class (long-polls included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route", "code"}),
		checkins:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stent_server_checkins_total", Help: "Agent check-ins recorded."}),
		reports:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stent_server_reports_total", Help: "Agent reports received, by action and result."}, []string{"action", "result"}),
		bundleBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "stent_server_bundle_bytes_served_total", Help: "Bundle bytes served to agents."}),
		dbCommit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stent_server_db_commit_seconds", Help: "Time per group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		dbBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stent_server_db_batch_writes", Help: "Writes per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stent_server_active", Help: "1 when this instance serves the API, 0 while it is a standby."},
		func() float64 {
			if s.active.Load() {
				return 1
			}
			return 0
		})
	s.reg.MustRegister(m.apiLatency, m.checkins, m.reports, m.bundleBytes, m.dbCommit, m.dbBatch, active,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &fleetCollector{s})
	registerRebootMetrics(s)
	return m
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}

var (
	descHosts        = prometheus.NewDesc("stent_server_hosts", "Enrolled hosts by state (online, offline, revoked).", []string{"state"}, nil)
	descHostsHealth  = prometheus.NewDesc("stent_server_hosts_health", "Non-revoked hosts by reported health.", []string{"health"}, nil)
	descPatches      = prometheus.NewDesc("stent_server_patch_hosts", "Hosts reporting a live patch, by patch and state (enabled, transition, disabled).", []string{"patch", "state"}, nil)
	descRolloutHosts = prometheus.NewDesc("stent_server_rollout_hosts", "Hosts of each rollout by per-host state.", []string{"rollout", "patch", "state"}, nil)
	descRolloutWave  = prometheus.NewDesc("stent_server_rollout_wave", "Waves released (0 = canary) and rollout state as a label.", []string{"rollout", "patch", "state"}, nil)
	descPolls        = prometheus.NewDesc("stent_server_longpolls", "Agent long-polls being held open.", nil, nil)
)

type fleetCollector struct{ s *Server }

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHosts, descHostsHealth, descPatches, descRolloutHosts, descRolloutWave, descPolls} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	states := map[string]int{"online": 0, "offline": 0, "revoked": 0}
	health := map[string]int{}
	type pk struct{ name, state string }
	patches := map[pk]int{}
	for _, h := range s.hosts {
		switch {
		case !h.RevokedAt.IsZero():
			states["revoked"]++
			continue
		case s.online(h, now):
			states["online"]++
		default:
			states["offline"]++
		}
		hv := h.Health
		if hv == "" {
			hv = "unknown"
		}
		health[api.Escape(hv)]++
		for _, p := range h.Patches {
			st := "disabled"
			if p.Transition {
				st = "transition"
			} else if p.Enabled {
				st = "enabled"
			}
			patches[pk{api.Escape(p.Name), st}]++
		}
	}
	for k, v := range states {
		ch <- prometheus.MustNewConstMetric(descHosts, prometheus.GaugeValue, float64(v), k)
	}
	for k, v := range health {
		ch <- prometheus.MustNewConstMetric(descHostsHealth, prometheus.GaugeValue, float64(v), k)
	}
	for k, v := range patches {
		ch <- prometheus.MustNewConstMetric(descPatches, prometheus.GaugeValue, float64(v), k.name, k.state)
	}
	for _, r := range s.rollouts {
		a := s.apiRollout(r, false)
		ch <- prometheus.MustNewConstMetric(descRolloutWave, prometheus.GaugeValue, float64(r.Wave), r.ID, r.Name, r.State)
		for st, v := range map[string]int{api.HostPending: a.Counts.Pending, api.HostReleased: a.Counts.Released,
			api.HostApplied: a.Counts.Applied - a.Counts.Healthy, api.HostHealthy: a.Counts.Healthy,
			api.HostFailed: a.Counts.Failed, api.HostReverted: a.Counts.Reverted} {
			ch <- prometheus.MustNewConstMetric(descRolloutHosts, prometheus.GaugeValue, float64(v), r.ID, r.Name, st)
		}
	}
	ch <- prometheus.MustNewConstMetric(descPolls, prometheus.GaugeValue, float64(s.polls.Load()))
}
