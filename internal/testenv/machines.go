package testenv

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The labels and annotation Cluster API puts on Machines (the test bed writes them as it would).
const (
	labelClusterName       = clusterv1.ClusterNameLabel
	labelDeploymentName    = clusterv1.MachineDeploymentNameLabel
	annotationRemediate    = clusterv1.RemediateMachineAnnotation
	machineSetOwnerUIDStub = "00000000-0000-0000-0000-000000000001"
)

// ProvisionMachine creates what Cluster API would have created for a running Machine of a
// MachineDeployment (no Cluster API controller runs in the plain test bed): the Machine, owned by a
// MachineSet, labelled with its cluster, deployment and "pool: <deployment>", phase Running with a
// Node and the providerID set, and its infrastructure machine with spec.
func (e *Env) ProvisionMachine(tb testing.TB, ns, cluster, deployment, name, providerID string, infraGVK schema.GroupVersionKind, infraSpec map[string]any) {
	tb.Helper()
	ctx := context.Background()
	infraObj := &unstructured.Unstructured{Object: map[string]any{"spec": infraSpec}}
	infraObj.SetGroupVersionKind(infraGVK)
	infraObj.SetNamespace(ns)
	infraObj.SetName(name)
	infraObj.SetLabels(map[string]string{labelClusterName: cluster})
	_ = unstructured.SetNestedField(infraObj.Object, providerID, "spec", "providerID")
	if err := e.Client.Create(ctx, infraObj); err != nil {
		tb.Fatalf("creating %s %s: %v", infraGVK.Kind, name, err)
	}
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(clusterv1.GroupVersion.WithKind("Machine"))
	m.SetNamespace(ns)
	m.SetName(name)
	m.SetLabels(map[string]string{labelClusterName: cluster, labelDeploymentName: deployment, "pool": deployment})
	m.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "MachineSet", Name: deployment + "-ms", UID: types.UID(machineSetOwnerUIDStub)}})
	m.Object["spec"] = map[string]any{
		"clusterName": cluster, "providerID": providerID,
		"bootstrap":         map[string]any{"dataSecretName": name},
		"infrastructureRef": map[string]any{"apiGroup": infraGVK.Group, "kind": infraGVK.Kind, "name": name},
	}
	if err := e.Client.Create(ctx, m); err != nil {
		tb.Fatalf("creating Machine %s: %v", name, err)
	}
	_ = unstructured.SetNestedField(m.Object, "Running", "status", "phase")
	_ = unstructured.SetNestedField(m.Object, name, "status", "nodeRef", "name")
	if err := e.Client.Status().Update(ctx, m); err != nil {
		tb.Fatalf("setting Machine %s Running: %v", name, err)
	}
}

// MachineState is "gone", "deleting", "remediate" (annotated for its MachineHealthCheck) or "ok".
func (e *Env) MachineState(tb testing.TB, ns, name string) string {
	tb.Helper()
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(clusterv1.GroupVersion.WithKind("Machine"))
	if err := e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		return "gone"
	}
	if m.GetDeletionTimestamp() != nil {
		return "deleting"
	}
	if _, ok := m.GetAnnotations()[annotationRemediate]; ok {
		return "remediate"
	}
	return "ok"
}
