package diff

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestTopologyFindings(t *testing.T) {
	cluster := obj(map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
		"metadata": map[string]any{"name": "edge", "namespace": "fleet"},
		"spec": map[string]any{"topology": map[string]any{"workers": map[string]any{"machineDeployments": []any{
			map[string]any{"class": "default", "name": "md-0", "replicas": int64(3)},
			map[string]any{"class": "default", "name": "md-auto", "replicas": int64(1), "metadata": map[string]any{"annotations": map[string]any{
				AnnotationAutoscalerMin: "1", AnnotationAutoscalerMax: "5"}}},
			map[string]any{"class": "default", "name": "md-free"},
		}}}},
	})
	generated := func(name, deployment string, replicas int64) *unstructured.Unstructured {
		md := obj(mdObject(replicas, map[string]any{LabelClusterName: "edge", LabelTopologyOwned: "", LabelTopologyDeploymentName: deployment}))
		md.SetName(name)
		return md
	}
	got := TopologyFindings(cluster, []*unstructured.Unstructured{
		generated("edge-md-0-abcde", "md-0", 5),     // scaled by hand: drift
		generated("edge-md-auto-xyz", "md-auto", 4), // autoscaled: no drift
		generated("edge-md-free-xyz", "md-free", 7), // no replicas in the topology: no drift
	}, Situation{})
	if len(got) != 1 {
		t.Fatalf("findings = %+v, want one for edge-md-0-abcde", got)
	}
	f := got[0]
	if f.Object.Name != "edge-md-0-abcde" || f.Action != ActionReport || f.Cluster != "edge" ||
		len(f.Fields) != 1 || f.Fields[0].Path != "/spec/replicas" || f.Fields[0].Desired != int64(3) || f.Fields[0].Live != int64(5) {
		t.Errorf("finding = %+v", f)
	}
	if strings.Contains(f.Reason, "paused") {
		t.Errorf("reason of a running cluster says paused: %q", f.Reason)
	}
	paused := TopologyFindings(cluster, []*unstructured.Unstructured{generated("edge-md-0-abcde", "md-0", 5)}, Situation{Paused: true})
	if len(paused) != 1 || paused[0].Action != ActionReport || !strings.HasSuffix(paused[0].Reason, "; cluster edge is paused") {
		t.Errorf("paused cluster's finding = %+v, want a report saying the cluster is paused", paused)
	}
}
