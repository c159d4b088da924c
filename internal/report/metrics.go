package report

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftd/driftd/internal/diff"
)

// Metrics are driftd's Prometheus metrics.
type Metrics struct {
	// Drifted counts the objects that still drift after the last cycle, by cluster, layer and class.
	Drifted *prometheus.GaugeVec
	// CycleDuration is the time one full cycle takes.
	CycleDuration prometheus.Histogram
	// Corrections counts corrections by result (succeeded, failed, blocked).
	Corrections *prometheus.CounterVec
	// CloudCalls counts cloud API calls by provider and operation.
	CloudCalls *prometheus.CounterVec
	// Revision is 1 for the source revision last rendered.
	Revision *prometheus.GaugeVec
	// LastCycle is the Unix time the last cycle ended.
	LastCycle prometheus.Gauge
	// LastSuccessfulCycle is the Unix time the last cycle ended that compared the whole fleet with
	// a good revision within its deadline.
	LastSuccessfulCycle prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered, as for plan).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Drifted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "driftd_drifted_objects", Help: "Objects still drifting after the last cycle (found and not corrected), by cluster, layer and class.",
		}, []string{"cluster", "layer", "class"}),
		CycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "driftd_cycle_duration_seconds", Help: "Duration of a full drift cycle (fetch, render, diff, correct).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		Corrections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "driftd_corrections_total", Help: "Corrections by result: succeeded, failed (the API server refused or could not take it), blocked (held back: paused, contested, a prune limit, a budget).",
		}, []string{"result"}),
		CloudCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "driftd_cloud_api_calls_total", Help: "Cloud API calls by provider and operation.",
		}, []string{"provider", "operation"}),
		Revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "driftd_source_revision_info", Help: "The source revision last rendered (value 1).",
		}, []string{"revision"}),
		LastCycle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "driftd_last_cycle_timestamp_seconds", Help: "Unix time at which the last full cycle ended.",
		}),
		LastSuccessfulCycle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "driftd_last_successful_cycle_timestamp_seconds",
			Help: "Unix time at which the last cycle ended that compared the whole fleet with a good revision within its deadline.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Drifted, m.CycleDuration, m.Corrections, m.CloudCalls, m.Revision, m.LastCycle, m.LastSuccessfulCycle)
	}
	return m
}

// SetDrift replaces the drifted-object gauges with the counts of findings (ignored ones excluded).
func (m *Metrics) SetDrift(findings []diff.Finding) {
	m.Drifted.Reset()
	for _, f := range findings {
		if f.Action == diff.ActionIgnored {
			continue
		}
		m.Drifted.WithLabelValues(f.Cluster, string(f.Layer), string(f.Class)).Inc()
	}
}

// SetRevision records the revision last rendered.
func (m *Metrics) SetRevision(revision string) {
	m.Revision.Reset()
	m.Revision.WithLabelValues(revision).Set(1)
}
