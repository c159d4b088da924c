package engine

import (
	"context"
	"slices"
	"testing"

	"github.com/driftd/driftd/internal/diff"
)

// TestTheCloudReadsTheRenderOneObjectAtATime: the cloud reconciler's view of a render lists its
// Clusters by type and name, finds the Cluster API objects of a kind in a namespace in key order,
// and decodes each object when asked, a copy of its own; objects of other groups are not in it.
func TestTheCloudReadsTheRenderOneObjectAtATime(t *testing.T) {
	ns := "cloud-view"
	files := fleet(ns, "1")
	files["md-1.yaml"] = `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata: {name: md-1, namespace: ` + ns + `}
spec:
  clusterName: prod
  selector: {matchLabels: {pool: md-1}}
  template:
    metadata: {labels: {pool: md-1}}
    spec:
      clusterName: prod
      bootstrap: {dataSecretName: md-1}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: md-1}
`
	files["cluster.yaml"] = "apiVersion: cluster.x-k8s.io/v1beta2\nkind: Cluster\nmetadata: {name: prod, namespace: " + ns + "}\nspec: {}\n"
	files["cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: " + ns + "}\n"
	// md-1 before md-0, the Cluster last: the view's order is the keys', not the render's.
	files["kustomization.yaml"] = "sortOptions: {order: fifo}\nresources: [namespace.yaml, md-1.yaml, md.yaml, cm.yaml, cluster.yaml]\n"
	e := newEngine(t, newDirSource(t, files), env.Client, Options{})
	if _, _, err := e.refresh(context.Background(), context.Background()); err != nil {
		t.Fatal(err)
	}
	r := e.Rendered()
	if len(r.Clusters) != 1 || r.Clusters[0].Name != "prod" || r.Clusters[0].Namespace != ns || r.Clusters[0].GroupVersionKind() != diff.GVKCluster {
		t.Fatalf("clusters %+v, want the Cluster prod", r.Clusters)
	}
	keys := r.Objects.Keys("MachineDeployment", ns)
	if want := []diff.Key{mdKey(ns), {Group: "cluster.x-k8s.io", Kind: "MachineDeployment", Namespace: ns, Name: "md-1"}}; !slices.Equal(keys, want) {
		t.Errorf("MachineDeployments %v, want %v", keys, want)
	}
	if keys := r.Objects.Keys("MachineDeployment", "elsewhere"); len(keys) != 0 {
		t.Errorf("MachineDeployments of another namespace: %v", keys)
	}
	md, ok := r.Objects.Get(mdKey(ns))
	if !ok || md.GetName() != "md-0" {
		t.Fatalf("Get(md-0) = %v, %v", md, ok)
	}
	md.SetName("changed")
	if again, _ := r.Objects.Get(mdKey(ns)); again.GetName() != "md-0" {
		t.Error("a change to an object Get returned reached the render")
	}
	if _, ok := r.Objects.Get(diff.Key{Kind: "ConfigMap", Namespace: ns, Name: "settings"}); ok {
		t.Error("a ConfigMap is in the cloud's view of the render")
	}
}
