package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv"
)

// fleet is a Namespace and a MachineDeployment in it with replicas (a string, so a test can make
// it invalid).
func fleet(ns, replicas string) map[string]string {
	return map[string]string{
		"kustomization.yaml": "resources:\n- namespace.yaml\n- md.yaml\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"md.yaml": `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: md-0
  namespace: ` + ns + `
spec:
  clusterName: prod
  replicas: ` + replicas + `
  selector:
    matchLabels: {pool: md-0}
  template:
    metadata:
      labels: {pool: md-0}
    spec:
      clusterName: prod
      version: v1.34.1
      bootstrap: {dataSecretName: md-0}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: md-0}
`,
	}
}

var gvkMD = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineDeployment"}

func mdKey(ns string) diff.Key {
	return diff.Key{Group: "cluster.x-k8s.io", Kind: "MachineDeployment", Namespace: ns, Name: "md-0"}
}

func liveReplicas(tb testing.TB, ns string) int64 {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkMD)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "md-0"}, u); err != nil {
		return -1
	}
	r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	return r
}

func scale(tb testing.TB, ns, manager string, replicas int64) {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkMD)
	u.SetNamespace(ns)
	u.SetName("md-0")
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	if err := env.Client.Patch(context.Background(), u, client.RawPatch("application/merge-patch+json", patch), client.FieldOwner(manager)); err != nil {
		tb.Fatal(err)
	}
}

// TestReconcileIsAVerdictOrARetry: what the API server answers the first request that checks an
// object (a missing one's creation) decides what driftd does. A verdict on the object (invalid) is a blocked finding, returned as a terminal error (not
// retried: controller-runtime counts it) and remembered until Git or the live object changes;
// anything else (429, 503, a namespace not there yet) is an error, returned so the workqueue
// retries it, and never remembered.
func TestReconcileIsAVerdictOrARetry(t *testing.T) {
	tests := []struct {
		name     string
		replicas string
		fault    int // status injected on the first request that writes the MachineDeployment: its creation
		// want after the first Reconcile
		wantErr      string // "", "retry" or "verdict"
		wantAction   diff.Action
		wantReplicas int64
		// patches of the MachineDeployment a second Reconcile makes (a transient failure is not
		// remembered: the object is created again, without a dry run; a verdict is)
		wantSecondPatches int
	}{
		{name: "valid: created", replicas: "3", wantReplicas: 3, wantSecondPatches: 0},
		{name: "429: retried", replicas: "3", fault: http.StatusTooManyRequests, wantErr: "retry", wantReplicas: -1, wantSecondPatches: 1},
		{name: "503: retried", replicas: "3", fault: http.StatusServiceUnavailable, wantErr: "retry", wantReplicas: -1, wantSecondPatches: 1},
		{name: "invalid: a verdict, remembered", replicas: "-2", wantErr: "verdict", wantAction: diff.ActionBlocked, wantReplicas: -1, wantSecondPatches: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := fmt.Sprintf("verdict-%d", i)
			src := newDirSource(t, fleet(ns, tt.replicas))
			proxy := env.NewAPIProxy(t)
			e := newEngine(t, src, proxyClient(t, proxy), Options{})
			ctx := context.Background()
			createNamespace(t, e, ns)
			if tt.fault != 0 {
				proxy.Inject(&testenv.Fault{Match: testenv.Patch("/machinedeployments/md-0"), Status: tt.fault, Times: 1})
			}
			res, err := e.Reconcile(ctx, mdKey(ns))
			got := ""
			switch {
			case errors.Is(err, reconcile.TerminalError(nil)):
				got = "verdict"
			case err != nil:
				got = "retry"
			}
			if got != tt.wantErr {
				t.Fatalf("Reconcile: %v (result %+v): %q, want %q", err, res, got, tt.wantErr)
			}
			if got := liveReplicas(t, ns); got != tt.wantReplicas {
				t.Errorf("live replicas %d, want %d", got, tt.wantReplicas)
			}
			f := e.ledger.Current(specEntry(mdKey(ns)))
			if tt.wantAction != "" && (f == nil || f.Action != tt.wantAction) {
				t.Errorf("finding %+v, want action %s", f, tt.wantAction)
			}
			proxy.Reset()
			_, err = e.Reconcile(ctx, mdKey(ns))
			if terminal := errors.Is(err, reconcile.TerminalError(nil)); (err != nil && !terminal) || terminal != (tt.wantErr == "verdict") {
				t.Fatalf("second Reconcile: %v, want a verdict again: %v", err, tt.wantErr == "verdict")
			}
			patches := len(proxy.Requests(func(r testenv.Request) bool {
				return r.Method == http.MethodPatch && strings.HasSuffix(r.Path, "/machinedeployments/md-0")
			}))
			if patches != tt.wantSecondPatches {
				t.Errorf("the second Reconcile made %d patches, want %d", patches, tt.wantSecondPatches)
			}
		})
	}
}

// TestPlanOfAnEmptyClusterCountsWhatLivesInARenderedNamespaceAsMissing: before the first run,
// the Namespace is missing, so everything in it is too: Missing, created after it, not an error.
func TestPlanOfAnEmptyClusterCountsWhatLivesInARenderedNamespaceAsMissing(t *testing.T) {
	ns := "plan-empty"
	e := newEngine(t, newDirSource(t, fleet(ns, "3")), env.Client, Options{})
	res, err := e.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Errorf("errors: %v", res.Errors)
	}
	got := map[string]diff.Action{}
	for _, f := range res.Findings {
		got[f.Object.Kind] = f.Action
		if f.Class != diff.ClassMissing {
			t.Errorf("%s: class %s, want Missing", f.Object, f.Class)
		}
	}
	if got["Namespace"] != diff.ActionCreate || got["MachineDeployment"] != diff.ActionCreate {
		t.Errorf("actions %v; want both created", got)
	}
}

// TestAReconcileDoesNotWaitForAFetch: a cycle hangs in its fetch; a watch-triggered reconcile of
// an edited object goes ahead meanwhile.
func TestAReconcileDoesNotWaitForAFetch(t *testing.T) {
	ns := "no-wait"
	src := newDirSource(t, fleet(ns, "3"))
	e := newEngine(t, src, env.Client, Options{})
	ctx := context.Background()
	if _, err := e.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	src.Block()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.Cycle(ctx)
	}()
	testenv.Eventually(t, 10*time.Second, "the cycle hanging in its fetch", func() bool { return src.Waiting() > 0 })
	scale(t, ns, "kubectl-edit", 7)
	if _, err := e.Reconcile(ctx, mdKey(ns)); err != nil {
		t.Fatal(err)
	}
	if got := liveReplicas(t, ns); got != 3 {
		t.Errorf("replicas %d after the reconcile, want 3", got)
	}
	if src.Waiting() == 0 {
		t.Error("the fetch ended before the reconcile did; the test proved nothing")
	}
	src.Unblock()
	<-done
}

// TestACycleCreatesACRDAndItsObjects: a render that brings a CustomResourceDefinition and objects
// of its kind creates both in one cycle, whether the CRD is rendered before or after them.
func TestACycleCreatesACRDAndItsObjects(t *testing.T) {
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[1]ss.fleet.example.com
spec:
  group: fleet.example.com
  names: {kind: %[2]s, listKind: %[2]sList, plural: %[1]ss, singular: %[1]s}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
`
	for _, tt := range []struct {
		kind, kustomization string
		first               string // the kind rendered first
	}{
		{"Gadget", "resources:\n- crd.yaml\n- object.yaml\n", "CustomResourceDefinition"},
		// In the order written: the object before its CRD.
		{"Widget", "sortOptions: {order: fifo}\nresources:\n- object.yaml\n- crd.yaml\n", "Widget"},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			lower := strings.ToLower(tt.kind)
			files := map[string]string{
				"kustomization.yaml": tt.kustomization,
				"crd.yaml":           fmt.Sprintf(crd, lower, tt.kind),
				"object.yaml":        "apiVersion: fleet.example.com/v1\nkind: " + tt.kind + "\nmetadata:\n  name: sprocket\nspec:\n  teeth: 12\n",
			}
			src := newDirSource(t, files)
			rendered, err := render.Render(src.dir, "", render.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range rendered.Objects {
				kinds = append(kinds, o.GetKind())
			}
			if kinds[0] != tt.first {
				t.Fatalf("rendered in the order %v; this case is about %s first", kinds, tt.first)
			}
			e := newEngine(t, src, env.Client, Options{})
			res, err := e.Cycle(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("errors: %v", res.Errors)
			}
			g := &unstructured.Unstructured{}
			g.SetGroupVersionKind(schema.GroupVersionKind{Group: "fleet.example.com", Version: "v1", Kind: tt.kind})
			if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "sprocket"}, g); err != nil {
				t.Fatalf("the %s was not created in the CRD's cycle: %v", tt.kind, err)
			}
			if len(res.Remaining()) != 0 {
				t.Errorf("remaining after the cycle: %+v", res.Remaining())
			}
		})
	}
}

// TestReplicasOfLeavesOutMachinesOnTheirWayOut: at the end of an earlier rollout status.replicas
// still counts the old Machines being deleted; a new rollout replaces only those meant to stay.
func TestReplicasOfLeavesOutMachinesOnTheirWayOut(t *testing.T) {
	for _, tt := range []struct {
		name string
		obj  map[string]any
		want int
	}{
		{"steady", map[string]any{"spec": map[string]any{"replicas": int64(3)}, "status": map[string]any{"replicas": int64(3)}}, 3},
		{"an earlier rollout ending", map[string]any{"spec": map[string]any{"replicas": int64(1)}, "status": map[string]any{"replicas": int64(2)}}, 1},
		{"scaling up", map[string]any{"spec": map[string]any{"replicas": int64(3)}, "status": map[string]any{"replicas": int64(1)}}, 1},
		{"no status yet", map[string]any{"spec": map[string]any{"replicas": int64(2)}}, 2},
		{"no spec replicas (an autoscaler's)", map[string]any{"spec": map[string]any{}, "status": map[string]any{"replicas": int64(4)}}, 4},
	} {
		if got := replicasOf(&unstructured.Unstructured{Object: tt.obj}); got != tt.want {
			t.Errorf("%s: replicasOf = %d, want %d", tt.name, got, tt.want)
		}
	}
}
