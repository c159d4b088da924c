package testbed

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestManagedFieldsShowEveryManagerAndTheirFields(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "managed")

	desired := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
		"metadata": map[string]any{"name": "md", "namespace": "managed"},
		"spec": map[string]any{
			"clusterName": "c", "replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"pool": "md"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"pool": "md"}},
				"spec": map[string]any{
					"clusterName": "c",
					"bootstrap":   map[string]any{"dataSecretName": "bootstrap"},
					"infrastructureRef": map[string]any{
						"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachineTemplate", "name": "md",
					},
				},
			},
		},
	}}
	// The first manager applies the whole object.
	if err := env.Client.Patch(ctx, desired.DeepCopy(), client.Apply, client.FieldOwner("driftd"), client.ForceOwnership); err != nil {
		t.Fatalf("server-side apply by driftd: %v", err)
	}
	// A second manager changes the replicas, as `kubectl scale` or `kubectl edit` would (an update).
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(desired), live); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(live.Object, int64(7), "spec", "replicas"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx, live, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatalf("update by kubectl-edit: %v", err)
	}

	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(desired), live); err != nil {
		t.Fatal(err)
	}
	type owner struct{ Manager, Operation string }
	owners := map[string]owner{} // field -> who owns it
	managers := map[owner]bool{}
	for _, mf := range live.GetManagedFields() {
		o := owner{mf.Manager, string(mf.Operation)}
		managers[o] = true
		if mf.FieldsV1 == nil {
			continue
		}
		set := string(mf.FieldsV1.Raw)
		for _, field := range []string{`"f:replicas"`, `"f:clusterName"`} {
			if strings.Contains(set, field) {
				owners[field] = o
			}
		}
	}
	wantManagers := map[owner]bool{{"driftd", "Apply"}: true, {"kubectl-edit", "Update"}: true}
	if diff := cmp.Diff(wantManagers, managers); diff != "" {
		t.Errorf("managers in metadata.managedFields (-want +got):\n%s", diff)
	}
	wantOwners := map[string]owner{
		`"f:replicas"`:    {"kubectl-edit", "Update"}, // taken over from driftd by the update
		`"f:clusterName"`: {"driftd", "Apply"},
	}
	if diff := cmp.Diff(wantOwners, owners); diff != "" {
		t.Errorf("field owners (-want +got):\n%s", diff)
	}
	if got, _, _ := unstructured.NestedInt64(live.Object, "spec", "replicas"); got != 7 {
		t.Errorf("live replicas = %d, want 7", got)
	}
}
