package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

var (
	gvkMachine    = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Machine"}
	gvkAWSMachine = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachine"}
	gvkVSMachine  = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "VSphereMachine"}
)

// provisioned creates what Cluster API would have created for a running Machine of a
// MachineDeployment: the Machine (owned by a MachineSet, phase Running with a Node, providerID set)
// and its infrastructure machine with spec. No Cluster API controller runs in the test bed.
func provisioned(tb testing.TB, ns, cluster, deployment, name, providerID string, infraGVK schema.GroupVersionKind, infraSpec map[string]any) {
	tb.Helper()
	ctx := context.Background()
	infraObj := &unstructured.Unstructured{Object: map[string]any{"spec": infraSpec}}
	infraObj.SetGroupVersionKind(infraGVK)
	infraObj.SetNamespace(ns)
	infraObj.SetName(name)
	infraObj.SetLabels(map[string]string{diff.LabelClusterName: cluster})
	unstructured.SetNestedField(infraObj.Object, providerID, "spec", "providerID")
	if err := env.Client.Create(ctx, infraObj); err != nil {
		tb.Fatalf("creating %s %s: %v", infraGVK.Kind, name, err)
	}
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(gvkMachine)
	m.SetNamespace(ns)
	m.SetName(name)
	m.SetLabels(map[string]string{diff.LabelClusterName: cluster, diff.LabelDeploymentName: deployment, "pool": deployment})
	m.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "MachineSet", Name: deployment + "-ms", UID: types.UID("00000000-0000-0000-0000-000000000001")}})
	m.Object["spec"] = map[string]any{
		"clusterName": cluster, "providerID": providerID,
		"bootstrap":         map[string]any{"dataSecretName": name},
		"infrastructureRef": map[string]any{"apiGroup": infraGVK.Group, "kind": infraGVK.Kind, "name": name},
	}
	if err := env.Client.Create(ctx, m); err != nil {
		tb.Fatalf("creating Machine %s: %v", name, err)
	}
	unstructured.SetNestedField(m.Object, "Running", "status", "phase")
	unstructured.SetNestedField(m.Object, name, "status", "nodeRef", "name")
	if err := env.Client.Status().Update(ctx, m); err != nil {
		tb.Fatalf("setting Machine %s Running: %v", name, err)
	}
}

// healthCheck creates a MachineHealthCheck selecting the Machines of a deployment.
func healthCheck(tb testing.TB, ns, cluster, deployment string) {
	tb.Helper()
	mhc := &unstructured.Unstructured{}
	mhc.SetGroupVersionKind(gvkMHC)
	mhc.SetNamespace(ns)
	mhc.SetName(deployment + "-mhc")
	mhc.Object["spec"] = map[string]any{"clusterName": cluster, "selector": map[string]any{"matchLabels": map[string]any{"pool": deployment}}}
	if err := env.Client.Create(context.Background(), mhc); err != nil {
		tb.Fatal(err)
	}
}

// machineState is "gone", "deleting", "remediate" (annotated for its MachineHealthCheck) or "ok".
func machineState(tb testing.TB, ns, name string) string {
	tb.Helper()
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(gvkMachine)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		return "gone"
	}
	if m.GetDeletionTimestamp() != nil {
		return "deleting"
	}
	if _, ok := m.GetAnnotations()[diff.AnnotationRemediateMachine]; ok {
		return "remediate"
	}
	return "ok"
}

// findingOf returns the finding about an object of kind and name, or nil.
func findingOf(doc planDoc, kind, name string) *diff.Finding {
	for i := range doc.Findings {
		if doc.Findings[i].Object.Kind == kind && doc.Findings[i].Object.Name == name {
			return &doc.Findings[i]
		}
	}
	return nil
}

func deleteMachine(tb testing.TB, ns, name string) {
	tb.Helper()
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(gvkMachine)
	m.SetNamespace(ns)
	m.SetName(name)
	if err := env.Client.Delete(context.Background(), m); err != nil {
		tb.Fatal(err)
	}
}

// motoProxy puts a proxy in front of moto and points the SDK's standard variable at it: seen is
// called with each request's body after moto answered and before the answer is passed on (it may
// count, or wait to make the cloud slow).
func motoProxy(t *testing.T, cloud *awsCloud, seen func(body []byte)) {
	t.Helper()
	moto, _ := url.Parse(cloud.moto.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(moto)
	rp.Transport = testenv.HTTP.Transport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		seen(body)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
}
