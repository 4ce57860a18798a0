package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stent-dev/stent/api"
)

// Metrics are an agent's Prometheus metrics. A nil *Metrics records nothing
// (the fleet simulator runs thousands of agents without them).
type Metrics struct {
	syncs      *prometheus.CounterVec
	lastSync   prometheus.Gauge
	actions    *prometheus.CounterVec
	dlBytes    prometheus.Counter
	dlResumes  prometheus.Counter
	patchGauge prometheus.Gauge
}

// NewMetrics registers an agent's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncs:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stent_agent_syncs_total", Help: "Syncs with the server by result (ok, error)."}, []string{"result"}),
		lastSync:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "stent_agent_last_sync_timestamp_seconds", Help: "When the last sync succeeded."}),
		actions:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stent_agent_actions_total", Help: "Applies and reverts by result (ok, failed, refused)."}, []string{"action", "result"}),
		dlBytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stent_agent_download_bytes_total", Help: "Bundle bytes downloaded."}),
		dlResumes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stent_agent_download_resumes_total", Help: "Downloads resumed from a partial file."}),
		patchGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stent_agent_live_patches", Help: "Live patches enabled on the host."}),
	}
	reg.MustRegister(m.syncs, m.lastSync, m.actions, m.dlBytes, m.dlResumes, m.patchGauge)
	return m
}

func (m *Metrics) sync(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.syncs.WithLabelValues("error").Inc()
		return
	}
	m.syncs.WithLabelValues("ok").Inc()
	m.lastSync.Set(float64(time.Now().Unix()))
}

func (m *Metrics) action(action, result string) {
	if m != nil {
		m.actions.WithLabelValues(action, result).Inc()
	}
}

func (m *Metrics) downloaded(n int64) {
	if m != nil && n > 0 {
		m.dlBytes.Add(float64(n))
	}
}

func (m *Metrics) resumed(int64) {
	if m != nil {
		m.dlResumes.Inc()
	}
}

func (m *Metrics) patches(ps []api.PatchState) {
	if m == nil {
		return
	}
	n := 0
	for _, p := range ps {
		if p.Enabled {
			n++
		}
	}
	m.patchGauge.Set(float64(n))
}
