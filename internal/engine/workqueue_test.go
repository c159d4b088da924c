package engine

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// handedOver records what the engine hands to the workqueue.
type handedOver struct {
	mu   sync.Mutex
	keys []diff.Key
}

func (h *handedOver) add(k diff.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append(h.keys, k)
}

func (h *handedOver) get() []diff.Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.keys)
}

// TestOnlyPartsThatWaitedForTheirClusterAreHandedToTheWorkqueue: a cycle that creates a cluster
// from empty creates its parts itself and hands none to the workqueue (which would create them at
// the same time); a part that waited while its Cluster was being deleted is handed over as soon as
// driftd creates the Cluster anew.
func TestOnlyPartsThatWaitedForTheirClusterAreHandedToTheWorkqueue(t *testing.T) {
	ns := "parts-waiting"
	files := fleet(ns, "3")
	files["kustomization.yaml"] = "resources:\n- namespace.yaml\n- cluster.yaml\n- md.yaml\n"
	files["cluster.yaml"] = "apiVersion: cluster.x-k8s.io/v1beta2\nkind: Cluster\nmetadata:\n  name: prod\n  namespace: " + ns + "\nspec:\n  clusterNetwork:\n    serviceDomain: cluster.local\n"
	e := newEngine(t, newDirSource(t, files), env.Client, Options{})
	handed := &handedOver{}
	e.SetRequeue(handed.add)
	ctx := context.Background()
	res, err := e.Cycle(ctx)
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("the first cycle: %v %v", err, res.Errors)
	}
	if liveReplicas(t, ns) != 3 {
		t.Fatal("the MachineDeployment was not created")
	}
	if h := handed.get(); len(h) != 0 {
		t.Errorf("creating the cluster from empty handed %v to the workqueue, want nothing", h)
	}

	// kubectl delete cluster, as Cluster API tears one down: its finalizer holds the Cluster while
	// the parts go first.
	clusterKey := client.ObjectKey{Namespace: ns, Name: "prod"}
	cluster := &unstructured.Unstructured{}
	cluster.SetGroupVersionKind(diff.GVKCluster)
	if err := env.Client.Get(ctx, clusterKey, cluster); err != nil {
		t.Fatal(err)
	}
	cluster.SetFinalizers([]string{"cluster.cluster.x-k8s.io"})
	if err := env.Client.Update(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	md := &unstructured.Unstructured{}
	md.SetGroupVersionKind(gvkMD)
	md.SetNamespace(ns)
	md.SetName("md-0")
	if err := env.Client.Delete(ctx, md); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reconcile(ctx, mdKey(ns)); err != nil {
		t.Fatal(err)
	}
	if liveReplicas(t, ns) != -1 {
		t.Error("driftd created a MachineDeployment of a Cluster being deleted")
	}
	if h := handed.get(); len(h) != 0 {
		t.Errorf("while the Cluster is being deleted, handed %v to the workqueue", h)
	}

	// The teardown ends; Git still has the Cluster, so driftd creates it anew.
	if err := env.Client.Get(ctx, clusterKey, cluster); err != nil {
		t.Fatal(err)
	}
	cluster.SetFinalizers(nil)
	if err := env.Client.Update(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the Cluster gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, clusterKey, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster"}}))
	})
	if _, err := e.Reconcile(ctx, diff.Key{Group: "cluster.x-k8s.io", Kind: "Cluster", Namespace: ns, Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	if h := handed.get(); !slices.Equal(h, []diff.Key{mdKey(ns)}) {
		t.Errorf("creating the Cluster anew handed %v to the workqueue, want the MachineDeployment that waited", h)
	}
}

// TestACycleOutOfTimeLeavesWhatItDidNotReachToTheNext: the objects a cycle did not reach before
// its deadline are not handed to the workqueue (the next cycle takes them in their stage's turn),
// and one error says how many; the next cycle creates them.
func TestACycleOutOfTimeLeavesWhatItDidNotReachToTheNext(t *testing.T) {
	ns := "out-of-time"
	names := []string{"cm-a", "cm-b", "cm-c", "cm-d", "cm-e"}
	proxy := env.NewAPIProxy(t)
	e := newEngine(t, newDirSource(t, configMaps(ns, "one", names...)), proxyClient(t, proxy), Options{Workers: 1, CycleTimeout: 2 * time.Second})
	handed := &handedOver{}
	e.SetRequeue(handed.add)
	createNamespace(t, e, ns)
	// A slow API server: every creation takes 1.5 s, so the cycle reaches two of five.
	slow := proxy.Inject(&testenv.Fault{Match: func(r *http.Request) bool {
		return r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/configmaps/")
	}, Delay: 1500 * time.Millisecond, Times: 1000})
	res, err := e.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete {
		t.Fatal("the cycle finished: the API server was not slow enough to test anything")
	}
	// At most the one whose creation was in flight at the deadline: a transient failure.
	if h := handed.get(); len(h) > 1 {
		t.Errorf("the cycle handed %v to the workqueue, want at most the object in flight at its deadline", h)
	}
	var summary int
	for _, err := range res.Errors {
		if strings.Contains(err.Error(), "objects not checked: context deadline exceeded") {
			summary++
		} else if strings.Contains(err.Error(), "not checked") {
			t.Errorf("an error for each object not reached: %v", err)
		}
	}
	if summary != 1 {
		t.Errorf("errors %v, want one saying how many objects were not checked", res.Errors)
	}

	proxy.Remove(slow)
	if res, err := e.Cycle(context.Background()); err != nil || !res.Complete {
		t.Fatalf("the next cycle: %v, complete %v, errors %v", err, res.Complete, res.Errors)
	}
	for _, name := range names {
		if !configMapExists(t, ns, name) {
			t.Errorf("%s was not created by the next cycle", name)
		}
	}
}
