package e2e

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// sharded is the AWS cluster name, labelled for shard.
func sharded(name, shard string) string {
	c, w := fleet.AWSCluster(name)
	return strings.Replace(c, "  name: "+name+"\nspec:", "  name: "+name+"\n  labels:\n    fleet.example.com/shard: "+shard+"\nspec:", 1) + "---\n" + w
}

func TestShardsReportOnlyTheirClusters(t *testing.T) {
	ns := "shards"
	// Two clusters of the same shape, labelled for shards a and b, and a shared namespace-less ConfigMap.
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("a.yaml", sharded("prod", "a")).Add("b.yaml", sharded("edge", "b")).
		Add("shared.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fleet-settings\ndata:\n  region: eu\n").Files())

	clustersOf := func(shard string) []string {
		_, doc, stderr := drv.Plan(t, append(drv.Args(t, repo.Dir, "shard-"+shard), "--shard", "fleet.example.com/shard="+shard)...)
		seen := map[string]bool{}
		for _, f := range doc.Findings {
			c := f.Cluster
			if c == "" {
				c = "(none)"
			}
			seen[c] = true
		}
		var out []string
		for c := range seen {
			out = append(out, c)
		}
		sort.Strings(out)
		if len(doc.Errors) > 0 {
			t.Errorf("shard %s: %v\n%s", shard, doc.Errors, stderr)
		}
		return out
	}
	if diff := cmp.Diff([]string{"(none)", "prod"}, clustersOf("a")); diff != "" {
		t.Errorf("shard a reports clusters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"(none)", "edge"}, clustersOf("b")); diff != "" {
		t.Errorf("shard b reports clusters (-want +got):\n%s", diff)
	}
	if code, _, stderr := drv.Exec(t.Context(), append([]string{"plan"}, append(drv.Args(t, repo.Dir, "x"), "--shard", "a in (")...)...); code != 1 || !strings.Contains(stderr, "--shard") {
		t.Errorf("a bad --shard: exit %d, stderr %q", code, stderr)
	}
}

// TestTwoShardsInOneNamespaceKeepTheirOwnState: two driftd daemons in one namespace, each its own
// --owner and --shard, with leader election: each holds its own lease, writes its own status
// ConfigMap with its own cluster's drift, keeps its own inventory, and labels its metrics with its
// owner. Neither overwrites the other's.
func TestTwoShardsInOneNamespaceKeepTheirOwnState(t *testing.T) {
	ns := "two-shards"
	system := drv.Namespace(t, "two-shards-system")
	files := fleet.New(ns).Add("a.yaml", sharded("prod", "a")).Add("b.yaml", sharded("edge", "b")).Files()
	repo := testenv.NewGitRepo(t, files)
	metrics := map[string]string{}
	for _, shard := range []string{"a", "b"} {
		metrics[shard] = testenv.FreeAddr(t)
		drv.Start(t, system, append(drv.Args(t, repo.Dir, "shard-"+shard), "--shard", "fleet.example.com/shard="+shard,
			"--leader-elect", "--interval", "1s", "--mode", "detect", "--metrics-bind-address", metrics[shard])...)
	}
	testenv.Eventually(t, time.Minute, "both shards' first cycles", func() bool {
		return testenv.MetricValue(metrics["a"], "driftd_cycle_duration_seconds_count") > 0 && testenv.MetricValue(metrics["b"], "driftd_cycle_duration_seconds_count") > 0
	})
	for _, shard := range []string{"a", "b"} {
		lease := &coordinationv1.Lease{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: system, Name: "driftd-shard-" + shard}, lease); err != nil || lease.Spec.HolderIdentity == nil {
			t.Errorf("shard %s holds no lease of its own: %v", shard, err)
		}
		if v := testenv.MetricValue(metrics[shard], `driftd_cycle_duration_seconds_count{owner="shard-`+shard+`"}`); v <= 0 {
			t.Errorf("shard %s's metrics are not labelled with its owner", shard)
		}
	}
	// Detect mode: each reports its own cluster as missing, in its own status ConfigMap.
	testenv.Eventually(t, 30*time.Second, "each status ConfigMap counting its own cluster", func() bool {
		for shard, cluster := range map[string]string{"a": "prod", "b": "edge"} {
			cm := &corev1.ConfigMap{}
			if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: system, Name: "driftd-status-shard-" + shard}, cm); err != nil {
				return false
			}
			var sum report.Summary
			if err := json.Unmarshal([]byte(cm.Data["summary.json"]), &sum); err != nil {
				return false
			}
			other := map[string]string{"prod": "edge", "edge": "prod"}[cluster]
			if sum.Counts[cluster][diff.ClassMissing] == 0 || sum.Counts[other] != nil {
				return false
			}
		}
		return true
	})
}
