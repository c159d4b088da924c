package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv"
)

func TestExampleFleetRendersAndPassesTheRealSchemas(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(root, "examples", "fleet-repo")

	// Plain `kustomize build clusters` renders it.
	plain, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repo, "clusters"))
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}

	res, err := render.Render(repo, "clusters", render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 || res.Partial {
		t.Fatalf("render errors: %v", res.Errors)
	}
	if len(res.Objects) != plain.Size() {
		t.Errorf("driftd rendered %d objects, kustomize build %d", len(res.Objects), plain.Size())
	}
	kinds := map[string]int{}
	autoscaled := false
	for _, o := range res.Objects {
		kinds[o.GetKind()]++
		if _, ok := o.GetAnnotations()[diff.AnnotationAutoscalerMax]; ok {
			autoscaled = true
		}
	}
	for kind, want := range map[string]int{"Cluster": 4, "AWSCluster": 2, "VSphereCluster": 1, "ClusterClass": 1, "MachineHealthCheck": 5, "Namespace": 2} {
		if kinds[kind] != want {
			t.Errorf("%d %s objects, want %d (all kinds: %v)", kinds[kind], kind, want, kinds)
		}
	}
	if !autoscaled {
		t.Error("no node pool under the cluster-autoscaler annotations")
	}

	// Every object passes the real schemas (namespaces are created, the rest dry-run).
	ctx := context.Background()
	for _, o := range res.Objects {
		opts := []client.PatchOption{client.FieldOwner("driftd"), client.ForceOwnership}
		if o.GetKind() != "Namespace" {
			opts = append(opts, client.DryRunAll)
		}
		if err := env.Client.Patch(ctx, o.DeepCopy(), client.Apply, opts...); err != nil {
			t.Errorf("%s: %s %s/%s: %v", o.File, o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}
