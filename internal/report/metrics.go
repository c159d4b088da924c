package report

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftd/driftd/internal/diff"
)

// Metrics are driftd's Prometheus metrics. Every one carries the label owner (--owner), so the
// shards of a fleet keep their series apart; a cluster is identified by namespace and cluster_name,
// as Cluster API's own metrics identify it, so the two join.
type Metrics struct {
	// Drifted counts the objects that still drift after the last cycle, by cluster (namespace,
	// cluster_name), layer and class.
	Drifted *prometheus.GaugeVec
	// CycleDuration is the time one full cycle takes.
	CycleDuration prometheus.Histogram
	// Corrections counts corrections by result (succeeded, failed, blocked).
	Corrections *prometheus.CounterVec
	// CloudCalls counts cloud API calls by provider and operation.
	CloudCalls *prometheus.CounterVec
	// CloudErrors counts cloud reads and writes that failed, by provider.
	CloudErrors *prometheus.CounterVec
	// Revision is 1 for the source revision last rendered.
	Revision *prometheus.GaugeVec
	// RolloutClusters counts the Clusters of a paced rollout by state: rolling (a place of the
	// budget taken) and waiting (a change that replaces Machines held for its turn).
	RolloutClusters *prometheus.GaugeVec

	// lastCycle and lastSuccessfulCycle have no series until a cycle ended: a standby, which runs
	// none, exports none, so an alert on their age fires only on the leader.
	lastCycle, lastSuccessfulCycle *prometheus.GaugeVec
}

// CycleBuckets are the buckets of driftd_cycle_duration_seconds: from a quiet cycle of a small
// fleet to past the default cycle deadline (10 minutes).
var CycleBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200}

// NewMetrics creates owner's metrics and registers them with reg (nil: not registered, as for plan).
func NewMetrics(reg prometheus.Registerer, owner string) *Metrics {
	c := prometheus.Labels{"owner": owner}
	m := &Metrics{
		Drifted: prometheus.NewGaugeVec(prometheus.GaugeOpts{ConstLabels: c,
			Name: "driftd_drifted_objects", Help: "Objects still drifting after the last cycle (found and not corrected), by cluster (namespace, cluster_name), layer and class.",
		}, []string{"namespace", "cluster_name", "layer", "class"}),
		CycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{ConstLabels: c,
			Name: "driftd_cycle_duration_seconds", Help: "Duration of a full drift cycle (fetch, render, diff, correct).",
			Buckets: CycleBuckets,
		}),
		Corrections: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: c,
			Name: "driftd_corrections_total", Help: "Corrections by result: succeeded, failed (the API server refused or could not take it), blocked (held back: paused, contested, a prune limit, a budget).",
		}, []string{"result"}),
		CloudCalls: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: c,
			Name: "driftd_cloud_api_calls_total", Help: "Cloud API calls by provider and operation.",
		}, []string{"provider", "operation"}),
		CloudErrors: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: c,
			Name: "driftd_cloud_api_errors_total", Help: "Cloud inventory reads (a snapshot, or a cluster of it) and cloud writes that failed, by provider.",
		}, []string{"provider"}),
		Revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{ConstLabels: c,
			Name: "driftd_source_revision_info", Help: "The source revision last rendered (value 1).",
		}, []string{"revision"}),
		RolloutClusters: prometheus.NewGaugeVec(prometheus.GaugeOpts{ConstLabels: c,
			Name: "driftd_rollout_clusters", Help: "Clusters of a paced rollout (--max-rolling-clusters) by state: rolling (Machines being replaced) or waiting (a change that replaces Machines held for its turn).",
		}, []string{"state"}),
		lastCycle: prometheus.NewGaugeVec(prometheus.GaugeOpts{ConstLabels: c,
			Name: "driftd_last_cycle_timestamp_seconds", Help: "Unix time at which the last full cycle ended (absent until this replica ran one).",
		}, nil),
		lastSuccessfulCycle: prometheus.NewGaugeVec(prometheus.GaugeOpts{ConstLabels: c,
			Name: "driftd_last_successful_cycle_timestamp_seconds",
			Help: "Unix time at which the last cycle ended that compared the whole fleet with a good revision within its deadline (absent until this replica ran one).",
		}, nil),
	}
	if reg != nil {
		reg.MustRegister(m.Drifted, m.CycleDuration, m.Corrections, m.CloudCalls, m.CloudErrors, m.Revision, m.RolloutClusters, m.lastCycle, m.lastSuccessfulCycle)
	}
	return m
}

// CycleEnded records that a cycle ended now, and whether it succeeded.
func (m *Metrics) CycleEnded(succeeded bool) {
	m.lastCycle.WithLabelValues().SetToCurrentTime()
	if succeeded {
		m.lastSuccessfulCycle.WithLabelValues().SetToCurrentTime()
	}
}

// SetDrift replaces the drifted-object gauges with the counts of findings (ignored ones excluded).
func (m *Metrics) SetDrift(findings []diff.Finding) {
	m.Drifted.Reset()
	for _, f := range findings {
		if f.Action == diff.ActionIgnored {
			continue
		}
		ns := f.Object.Namespace
		if f.Cluster == "" {
			ns = "" // not a cluster's: a ClusterClass, a Namespace
		}
		m.Drifted.WithLabelValues(ns, f.Cluster, string(f.Layer), string(f.Class)).Inc()
	}
}

// SetRevision records the revision last rendered.
func (m *Metrics) SetRevision(revision string) {
	m.Revision.Reset()
	m.Revision.WithLabelValues(revision).Set(1)
}

// Names are the names of every metric driftd serves from its own registry (the alert rules and the
// dashboard use nothing else; a test checks).
func Names() []string {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "x")
	m.Drifted.WithLabelValues("", "", "", "").Set(0)
	m.Corrections.WithLabelValues("").Add(0)
	m.CloudCalls.WithLabelValues("", "").Add(0)
	m.CloudErrors.WithLabelValues("").Add(0)
	m.Revision.WithLabelValues("").Set(0)
	m.CycleEnded(true)
	families, _ := reg.Gather()
	var out []string
	for _, f := range families {
		out = append(out, f.GetName())
	}
	return out
}
