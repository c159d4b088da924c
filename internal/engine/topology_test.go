package engine

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// TestAGeneratedMachineDeploymentIsJudgedAgainstItsClusterAfterAWatchEvent: a MachineDeployment
// Cluster API generated from a rendered Cluster's topology is not in Git itself; the engine tracks
// it, reports its drift against the topology (never writes it), and re-judges it alone when a
// watch sees it change.
func TestAGeneratedMachineDeploymentIsJudgedAgainstItsClusterAfterAWatchEvent(t *testing.T) {
	ns := "topology-watch"
	files := map[string]string{
		"kustomization.yaml": "resources:\n- namespace.yaml\n- cluster.yaml\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"cluster.yaml": `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: prod
  namespace: ` + ns + `
spec:
  topology:
    classRef: {name: aws}
    version: v1.34.1
    workers:
      machineDeployments:
      - {class: default-worker, name: md-0, replicas: 3}
`,
	}
	e := newEngine(t, newDirSource(t, files), env.Client, Options{})
	ctx := context.Background()
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first cycle: %v %v", err, res.Errors)
	}
	// What Cluster API's topology controller would generate, at 5 replicas.
	md := &unstructured.Unstructured{}
	md.SetUnstructuredContent(map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
		"metadata": map[string]any{"name": "prod-md-0-x7k2p", "namespace": ns, "labels": map[string]any{
			diff.LabelClusterName: "prod", diff.LabelTopologyOwned: "", diff.LabelTopologyDeploymentName: "md-0"}},
		"spec": map[string]any{"clusterName": "prod", "replicas": int64(5),
			"selector": map[string]any{"matchLabels": map[string]any{"pool": "md-0"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"pool": "md-0"}},
				"spec": map[string]any{"clusterName": "prod", "version": "v1.34.1", "bootstrap": map[string]any{"dataSecretName": "md-0"},
					"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachineTemplate", "name": "md-0"}}}},
	})
	if err := env.Client.Create(ctx, md); err != nil {
		t.Fatal(err)
	}
	key := diff.KeyOf(md)
	entry := report.Entry{Set: report.SetTopology, Key: key}

	res, err := e.Cycle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Tracks(key) {
		t.Error("the generated MachineDeployment is not tracked: a watch event on it would be dropped")
	}
	f := e.ledger.Current(entry)
	if f == nil || f.Class != diff.ClassModified || f.Action != diff.ActionReport || len(f.Fields) != 1 || f.Fields[0].Path != "/spec/replicas" {
		t.Fatalf("finding %+v (cycle findings %+v), want replicas Modified, reported", f, res.Findings)
	}
	if got, _, _ := unstructured.NestedInt64(get(t, md).Object, "spec", "replicas"); got != 5 {
		t.Errorf("replicas %d: driftd wrote a generated MachineDeployment", got)
	}

	// The topology controller sets it back; the watch event re-judges it alone.
	if err := unstructured.SetNestedField(md.Object, int64(3), "spec", "replicas"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx, md); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if f := e.ledger.Current(entry); f != nil {
		t.Errorf("finding %+v remains after the MachineDeployment matched its topology again", f)
	}
}

func get(tb testing.TB, obj *unstructured.Unstructured) *unstructured.Unstructured {
	tb.Helper()
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), live); err != nil {
		tb.Fatal(err)
	}
	return live
}
