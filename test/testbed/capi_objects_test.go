package testbed

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
)

func createNamespace(tb testing.TB, name string) {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
}

func TestCAPIObjectsCreatedAndReadBack(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "fleet")
	objs := testenv.ReadObjects(t, "testdata/aws-cluster.yaml")

	wantKinds := []string{"Cluster", "KubeadmControlPlane", "MachineDeployment", "AWSMachineTemplate", "VSphereMachineTemplate"}
	var gotKinds []string
	for _, obj := range objs {
		gotKinds = append(gotKinds, obj.GetKind())
		t.Run(obj.GetKind(), func(t *testing.T) {
			created := obj.DeepCopy()
			if err := env.Client.Create(ctx, created); err != nil {
				t.Fatalf("creating %s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(obj.GroupVersionKind())
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
				t.Fatalf("reading back %s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
			if live.GetUID() == "" || live.GetResourceVersion() == "" {
				t.Errorf("read back %s without uid or resourceVersion", obj.GetKind())
			}
			// Every field the manifest sets comes back as it was sent.
			want, _, _ := unstructured.NestedMap(obj.Object, "spec")
			got, _, _ := unstructured.NestedMap(live.Object, "spec")
			if diff := cmp.Diff(want, got, onlyKeysOf(want)); diff != "" {
				t.Errorf("%s spec read back (-want +got):\n%s", obj.GetKind(), diff)
			}
		})
	}
	if diff := cmp.Diff(wantKinds, gotKinds); diff != "" {
		t.Fatalf("fixture kinds (-want +got):\n%s", diff)
	}
}

// onlyKeysOf compares maps on the keys of want only, so that fields the server defaults do not count.
func onlyKeysOf(want map[string]any) cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		var cur any = want
		for _, step := range p {
			mi, ok := step.(cmp.MapIndex)
			if !ok {
				continue
			}
			m, ok := cur.(map[string]any)
			if !ok {
				return false
			}
			v, ok := m[mi.Key().String()]
			if !ok {
				return true // a key want does not have: defaulted by the server
			}
			cur = v
		}
		return false
	}, cmp.Ignore())
}

func TestSchemaInvalidObjectsAreRejectedByTheServer(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "invalid")
	tests := []struct {
		name    string
		obj     map[string]any
		message string
	}{
		{
			name: "Cluster without spec",
			obj: map[string]any{
				"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
				"metadata": map[string]any{"name": "no-spec", "namespace": "invalid"},
			},
			message: "spec: Required value",
		},
		{
			name: "MachineDeployment with negative replicas",
			obj: map[string]any{
				"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
				"metadata": map[string]any{"name": "negative", "namespace": "invalid"},
				"spec": map[string]any{
					"clusterName": "c", "replicas": int64(-1),
					"selector": map[string]any{},
					"template": map[string]any{"spec": map[string]any{
						"clusterName": "c",
						"bootstrap":   map[string]any{"dataSecretName": "x"},
						"infrastructureRef": map[string]any{
							"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachineTemplate", "name": "x",
						},
					}},
				},
			},
			message: "spec.replicas",
		},
		{
			name: "VSphereMachineTemplate with CPUs as a word",
			obj: map[string]any{
				"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "VSphereMachineTemplate",
				"metadata": map[string]any{"name": "bad-cpus", "namespace": "invalid"},
				"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
					"template": "ubuntu", "numCPUs": "four",
					"network": map[string]any{"devices": []any{map[string]any{"networkName": "VM Network"}}},
				}}},
			},
			message: "spec.template.spec.numCPUs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := env.Client.Create(ctx, &unstructured.Unstructured{Object: tt.obj})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create = %v, want the server's Invalid error", err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not contain the server's message %q", err, tt.message)
			}
		})
	}
}
