package e2e

import (
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/driftd/driftd/internal/testenv"
)

func TestShardsReportOnlyTheirClusters(t *testing.T) {
	ns := "shards"
	// Two clusters of the same shape, labelled for shards a and b, and a shared namespace-less ConfigMap.
	a := fleetFiles(ns)
	files := map[string]string{"fleet/kustomization.yaml": kustomization(ns, "a.yaml", "b.yaml", "shared.yaml"), "fleet/namespace.yaml": namespaceYAML(ns)}
	files["fleet/a.yaml"] = strings.Replace(a["fleet/cluster.yaml"]+"---\n"+a["fleet/workers.yaml"], "  name: prod\nspec:", "  name: prod\n  labels:\n    fleet.example.com/shard: a\nspec:", 1)
	b := strings.NewReplacer("prod-cp", "edge-cp", "prod-md-0", "edge-md-0", "name: prod\n", "name: edge\n", "clusterName: prod", "clusterName: edge").Replace(files["fleet/a.yaml"])
	files["fleet/b.yaml"] = strings.Replace(b, "fleet.example.com/shard: a", "fleet.example.com/shard: b", 1)
	files["fleet/shared.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fleet-settings\ndata:\n  region: eu\n"
	repo := testenv.NewGitRepo(t, files)

	clustersOf := func(shard string) []string {
		_, doc, stderr := plan(t, append(commonArgs(t, repo.Dir, "shard-"+shard), "--shard", "fleet.example.com/shard="+shard)...)
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
	if code, _, stderr := driftd(t.Context(), append([]string{"plan"}, append(commonArgs(t, repo.Dir, "x"), "--shard", "a in (")...)...); code != 1 || !strings.Contains(stderr, "--shard") {
		t.Errorf("a bad --shard: exit %d, stderr %q", code, stderr)
	}
}
