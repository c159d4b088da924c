package e2e

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const classBasedCluster = `apiVersion: cluster.x-k8s.io/v1beta2
kind: ClusterClass
metadata:
  name: quick-start
spec:
  infrastructure:
    templateRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: VSphereClusterTemplate, name: quick-start}
  controlPlane:
    templateRef: {apiVersion: controlplane.cluster.x-k8s.io/v1beta2, kind: KubeadmControlPlaneTemplate, name: quick-start}
  workers:
    machineDeployments:
    - class: default-worker
      bootstrap:
        templateRef: {apiVersion: bootstrap.cluster.x-k8s.io/v1beta2, kind: KubeadmConfigTemplate, name: quick-start-worker}
      infrastructure:
        templateRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: VSphereMachineTemplate, name: quick-start-worker}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: edge
spec:
  topology:
    classRef: {name: quick-start}
    version: v1.34.1
    workers:
      machineDeployments:
      - class: default-worker
        name: md-0
        replicas: 3
`

func TestTopologyMachineDeploymentIsJudgedAgainstItsCluster(t *testing.T) {
	ns := "topology"
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("edge.yaml", classBasedCluster).Files())
	args := drv.Args(t, repo.Dir, "topology")
	drv.RunOnce(t, ns, args...)

	// What Cluster API's topology controller generates from the Cluster (no CAPI controller runs here).
	generated := &unstructured.Unstructured{}
	generated.SetGroupVersionKind(diff.GVKMachineDeployment)
	generated.SetNamespace(ns)
	generated.SetName("edge-md-0-x7k2p")
	generated.SetLabels(map[string]string{diff.LabelClusterName: "edge", diff.LabelTopologyOwned: "", diff.LabelTopologyDeploymentName: "md-0", "pool": "edge-md-0"})
	generated.Object["spec"] = map[string]any{
		"clusterName": "edge", "replicas": int64(3),
		"selector": map[string]any{"matchLabels": map[string]any{"pool": "edge-md-0"}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"pool": "edge-md-0"}},
			"spec": map[string]any{
				"clusterName": "edge", "version": "v1.34.1",
				"bootstrap":         map[string]any{"dataSecretName": "edge-md-0"},
				"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "VSphereMachineTemplate", "name": "edge-md-0"},
			},
		},
	}
	if err := env.Client.Patch(context.Background(), generated, client.Apply, client.FieldOwner("capi-topology"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	if code, doc, _ := drv.Plan(t, args...); code != 0 {
		t.Fatalf("plan with the topology in sync: exit %d, findings %+v", code, doc.Findings)
	}

	drv.Scale(t, "kubectl-scale", ns, "edge-md-0-x7k2p", 6)
	code, doc, _ := drv.Plan(t, args...)
	if code != 2 || len(doc.Findings) != 1 {
		t.Fatalf("plan: exit %d, findings %+v; want the generated MachineDeployment", code, doc.Findings)
	}
	f := doc.Findings[0]
	if f.Object.Name != "edge-md-0-x7k2p" || f.Action != diff.ActionReport || !strings.Contains(f.Reason, "through the Cluster") ||
		len(f.Fields) != 1 || f.Fields[0].Path != "/spec/replicas" || f.Fields[0].Desired != float64(3) || f.Fields[0].Live != float64(6) || f.Fields[0].Manager != "kubectl-scale" {
		t.Errorf("finding = %+v", f)
	}
	rv := drv.Get(t, diff.GVKMachineDeployment, ns, "edge-md-0-x7k2p").GetResourceVersion()
	drv.RunOnce(t, ns, args...)
	if drv.Get(t, diff.GVKMachineDeployment, ns, "edge-md-0-x7k2p").GetResourceVersion() != rv {
		t.Error("driftd edited a MachineDeployment generated from a topology")
	}
}
