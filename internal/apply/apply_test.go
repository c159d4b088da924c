package apply_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var (
	env *testenv.Env
	drv *driver.Driver
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { env, drv = e, driver.New(e) })
}

func machineDeployment(ns, name string, replicas int64) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"clusterName": "prod", "replicas": replicas,
		"selector": map[string]any{"matchLabels": map[string]any{"pool": "md-0"}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"pool": "md-0"}},
			"spec": map[string]any{"clusterName": "prod", "version": "v1.34.1",
				"bootstrap":         map[string]any{"configRef": map[string]any{"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfigTemplate", "name": "x"}},
				"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachineTemplate", "name": "x"}},
		},
	}}}
	u.SetGroupVersionKind(diff.GVKMachineDeployment)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// What the API server says of a write, sorted the way driftd acts on it: a verdict on the object
// (never retried until Git or the live object changes) or trouble that passes (retried).
func TestTheAPIServersAnswersAreSorted(t *testing.T) {
	ctx := context.Background()
	ns := drv.Namespace(t, "apply-verdicts")
	a := apply.New(env.Client)

	invalid := a.Apply(ctx, machineDeployment(ns, "negative", -2))
	if invalid.Err == nil || !apply.Rejected(invalid.Err) {
		t.Errorf("replicas -2: %v; want a verdict (the CRD's schema refuses it)", invalid.Err)
	}
	noNamespace := a.Apply(ctx, machineDeployment("apply-nowhere", "md", 3))
	if noNamespace.Err == nil || apply.Rejected(noNamespace.Err) || !apply.NamespaceMissing(noNamespace.Err) {
		t.Errorf("a namespace not there yet: %v; want transient and NamespaceMissing", noNamespace.Err)
	}

	gr := schema.GroupResource{Group: "cluster.x-k8s.io", Resource: "machinedeployments"}
	for _, tc := range []struct {
		name     string
		err      error
		rejected bool
	}{
		{"webhook denial", apierrors.NewForbidden(gr, "md", errors.New(`admission webhook "validation.machinedeployment.cluster.x-k8s.io" denied the request: spec.replicas: Invalid value`)), true},
		{"policy denial", apierrors.NewForbidden(gr, "md", errors.New("ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no")), true},
		{"RBAC", apierrors.NewForbidden(gr, "md", errors.New(`User "system:serviceaccount:driftd-system:driftd" cannot patch resource`)), false},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), false},
		{"server error", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), false},
		{"webhook unreachable", apierrors.NewInternalError(errors.New(`failed calling webhook "x": context deadline exceeded`)), false},
		{"timeout", apierrors.NewTimeoutError("the request timed out", 1), false},
		{"canceled", fmt.Errorf("applying: %w", context.Canceled), false},
		{"conflict", apierrors.NewConflict(gr, "md", errors.New("the object has been modified")), false},
	} {
		if got := apply.Rejected(tc.err); got != tc.rejected {
			t.Errorf("%s: Rejected = %v, want %v", tc.name, got, tc.rejected)
		}
	}
}

// An apply that changes nothing writes nothing; one that changes a field writes it as driftd.
func TestApplyWritesOnlyAChange(t *testing.T) {
	ctx := context.Background()
	ns := drv.Namespace(t, "apply-writes")
	a := apply.New(env.Client)
	if r := a.Apply(ctx, machineDeployment(ns, "md", 3)); r.Err != nil || r.Action != "created" {
		t.Fatalf("first apply: %s, %v", r.Action, r.Err)
	}
	rv := drv.Get(t, diff.GVKMachineDeployment, ns, "md").GetResourceVersion()
	if r := a.Apply(ctx, machineDeployment(ns, "md", 3)); r.Err != nil || r.Action != "unchanged" {
		t.Errorf("same object: %s, %v; want unchanged", r.Action, r.Err)
	}
	if got := drv.Get(t, diff.GVKMachineDeployment, ns, "md").GetResourceVersion(); got != rv {
		t.Errorf("an unchanged apply wrote (resourceVersion %s → %s)", rv, got)
	}
	drv.Scale(t, "kubectl-edit", ns, "md", 5)
	if r := a.Apply(ctx, machineDeployment(ns, "md", 3)); r.Err != nil || r.Action != "configured" {
		t.Errorf("after kubectl scale: %s, %v; want configured", r.Action, r.Err)
	}
	live := drv.Get(t, diff.GVKMachineDeployment, ns, "md")
	if r, _, _ := unstructured.NestedInt64(live.Object, "spec", "replicas"); r != 3 {
		t.Errorf("replicas %d after the correction, want 3", r)
	}
	owned := false
	for _, mf := range live.GetManagedFields() {
		owned = owned || mf.Manager == apply.FieldManager
	}
	if !owned {
		t.Errorf("no managedFields entry of %s", apply.FieldManager)
	}
}

// A delete names the very object driftd read: another object that took its name since is not
// deleted, and an object already gone is no error.
func TestDeleteTakesOnlyTheObjectItWasGiven(t *testing.T) {
	ctx := context.Background()
	ns := drv.Namespace(t, "apply-delete")
	a := apply.New(env.Client)
	if r := a.Apply(ctx, machineDeployment(ns, "md", 3)); r.Err != nil {
		t.Fatal(r.Err)
	}
	seen := drv.Get(t, diff.GVKMachineDeployment, ns, "md")
	stale := seen.DeepCopy()
	stale.SetUID(types.UID("00000000-0000-0000-0000-00000000dead"))
	if r := a.Delete(ctx, stale); !apierrors.IsConflict(r.Err) {
		t.Errorf("delete with another UID: %v; want a conflict", r.Err)
	}
	if !drv.Exists(diff.GVKMachineDeployment, ns, "md") {
		t.Fatal("the object of another UID was deleted")
	}
	if r := a.Delete(ctx, seen); r.Err != nil {
		t.Errorf("delete: %v", r.Err)
	}
	if r := a.Delete(ctx, seen); r.Err != nil {
		t.Errorf("delete of an object already gone: %v, want nothing to do", r.Err)
	}
}

// Hint advises the Cluster API way only for an immutable template.
func TestHintOnlyForImmutableTemplates(t *testing.T) {
	immutable := apierrors.NewInvalid(schema.GroupKind{Group: "infrastructure.cluster.x-k8s.io", Kind: "AWSMachineTemplate"}, "workers",
		field.ErrorList{field.Invalid(field.NewPath("spec", "template", "spec"), "x", "AWSMachineTemplate spec.template.spec field is immutable. Please create new resource instead.")})
	if apply.Hint("AWSMachineTemplate", immutable) == "" {
		t.Error("no hint for an immutable template")
	}
	if apply.Hint("MachineDeployment", immutable) != "" {
		t.Error("a hint for a kind that is not a template")
	}
	if apply.Hint("AWSMachineTemplate", apierrors.NewTooManyRequests("slow down", 1)) != "" {
		t.Error("a hint for an error that is not about immutability")
	}
}
