package engine

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// TestTheLoopCorrectsAfterAWatchEventBetweenCycles: the daemon's loop runs a first cycle, then
// corrects an object edited live through its watch and workqueue, long before the next cycle.
func TestTheLoopCorrectsAfterAWatchEventBetweenCycles(t *testing.T) {
	ns := "loop-watch"
	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	watches := NewWatches(mgr.GetCache(), env.Client, mgr.GetRESTMapper())
	e := New(Options{Owner: "loop", LiveFromCache: true}, Deps{
		Source: newDirSource(t, fleet(ns, "3")), Reader: mgr.GetCache(), Client: env.Client, Mapper: mgr.GetRESTMapper(), Kinds: watches,
	})
	loop, err := NewLoop(mgr, e, watches, LoopOptions{Interval: time.Hour}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)

	testenv.Eventually(t, 30*time.Second, "the first cycle to create the MachineDeployment", func() bool { return liveReplicas(t, ns) == 3 })
	testenv.Eventually(t, 10*time.Second, "the first cycle to end", func() bool { return loop.lastSuccess.Load() != 0 })
	if err := loop.Ready(nil); err != nil {
		t.Errorf("not ready after a complete cycle: %v", err)
	}
	scale(t, ns, "kubectl-edit", 7)
	testenv.Eventually(t, 30*time.Second, "the watch to set replicas back to 3", func() bool { return liveReplicas(t, ns) == 3 })
}

// TestACycleFromTheCacheSeesAnEditOfAnObjectCachedAsMetadata: a kind the daemon caches as metadata
// only (a Namespace) is judged clean from the cache's metadata in a quiet cycle; an out-of-band
// change of a label Git sets is still seen by the next cycle (no watch: the loop's watches are not
// running here) and set back, and a quiet cycle after it sends no request.
func TestACycleFromTheCacheSeesAnEditOfAnObjectCachedAsMetadata(t *testing.T) {
	ns := "loop-metadata"
	files := fleet(ns, "3")
	files["namespace.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n  labels:\n    tier: gold\n"
	proxy := env.NewAPIProxy(t)
	c := proxyClient(t, proxy)
	// The cache reads the API directly; what goes through the proxy is the engine's own requests.
	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	watches := NewWatches(mgr.GetCache(), c, mgr.GetRESTMapper())
	e := New(Options{Owner: "loop-metadata", LiveFromCache: true, Policy: diff.Policy{Mode: diff.ModeCorrect}}, Deps{
		Source: newDirSource(t, files), Reader: mgr.GetCache(), Client: c, Mapper: mgr.GetRESTMapper(), Kinds: watches,
	})
	ctx := startManager(t, mgr)
	cycle := func(what string) {
		t.Helper()
		if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
			t.Fatalf("%s: %v %v", what, err, res.Errors)
		}
	}
	label := func() string {
		n := &corev1.Namespace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			t.Fatal(err)
		}
		return n.Labels["tier"]
	}
	quiet := func(what string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, what, func() bool {
			before := len(proxy.Requests(nil))
			cycle("quiet cycle")
			return len(proxy.Requests(nil)) == before
		})
	}
	cycle("first cycle")
	// Until the cache has seen what the first cycle created, a cycle reads it from the API.
	quiet("a cycle with no request")

	n := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
		t.Fatal(err)
	}
	n.Labels["tier"] = "bronze"
	if err := env.Client.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "a cycle to set the label back", func() bool {
		cycle("cycle after the edit")
		return label() == "gold"
	})
	quiet("a cycle with no request after the correction")
}

// startManager runs mgr until the test ends and returns the context it runs in.
func startManager(t *testing.T, mgr manager.Manager) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return ctx
}

// TestAnObjectJustCreatedIsNotCreatedAgainBeforeTheCacheSeesIt: a cycle creating a fleet from
// empty races the workqueue (a Cluster's creation hands it the Cluster's parts), whose look at an
// object the cycle just created may come before the cache has seen the create. The object is
// read from the API then, found equal to Git and not created a second time; one deleted
// meanwhile is created again.
func TestAnObjectJustCreatedIsNotCreatedAgainBeforeTheCacheSeesIt(t *testing.T) {
	ns := "loop-lag"
	proxy := env.NewAPIProxy(t)
	c := proxyClient(t, proxy)
	e := New(Options{Owner: "loop-lag", LiveFromCache: true, Policy: diff.Policy{Mode: diff.ModeCorrect}}, Deps{
		Source: newDirSource(t, fleet(ns, "3")), Reader: unseen{}, Client: c, Mapper: c.RESTMapper(),
	})
	ctx := context.Background()
	writes := func() []testenv.Request {
		return proxy.Requests(func(r testenv.Request) bool {
			return !r.DryRun && r.Method != http.MethodGet && !strings.Contains(r.Path, "/events")
		})
	}
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 || len(writes()) != 2 {
		t.Fatalf("the first cycle: %v %v, %d writes, want the Namespace and the MachineDeployment created", err, res.Errors, len(writes()))
	}
	proxy.Reset()
	for key := range e.snap.Load().desired {
		if _, err := e.Reconcile(ctx, key); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	if w := writes(); len(w) != 0 {
		t.Errorf("objects the cache has not seen yet were written again: %+v", w)
	}

	md := &unstructured.Unstructured{}
	md.SetGroupVersionKind(diff.GVKMachineDeployment)
	md.SetNamespace(ns)
	md.SetName("md-0")
	if err := env.Client.Delete(ctx, md); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the MachineDeployment to be created again", func() bool {
		_, _ = e.Reconcile(ctx, diff.KeyOf(md))
		return liveReplicas(t, ns) == 3
	})
}

// unseen is a cache that has seen nothing yet.
type unseen struct{}

func (unseen) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: obj.GetObjectKind().GroupVersionKind().Kind}, key.Name)
}

func (unseen) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// stalledGate is a KindGate whose watch of one kind never syncs while stalled is set, as an
// informer whose list the API server is slow to answer.
type stalledGate struct {
	KindGate
	kind    string
	stalled *atomic.Bool
}

func (g stalledGate) Ready(ctx context.Context, gvk schema.GroupVersionKind) error {
	if gvk.Kind == g.kind && g.stalled.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return g.KindGate.Ready(ctx, gvk)
}

func (g stalledGate) Serving(gvk schema.GroupVersionKind) bool {
	if gvk.Kind == g.kind && g.stalled.Load() {
		return false
	}
	return g.KindGate.Serving(gvk)
}

// TestAKindSlowToSyncHoldsBackNoOtherKind: while the watch of one kind (ServiceAccounts) does not
// sync, a cycle still corrects an object of another kind rendered after it (a Role whose label was
// edited live); the cycle ends at its deadline without the ServiceAccount checked.
func TestAKindSlowToSyncHoldsBackNoOtherKind(t *testing.T) {
	ns := "loop-stalled"
	files := map[string]string{
		"kustomization.yaml": "resources:\n- namespace.yaml\n- sa.yaml\n- role.yaml\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"sa.yaml":            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: " + ns + "\n",
		"role.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\n  namespace: " + ns +
			"\n  labels:\n    tier: gold\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n",
	}
	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	stalled := &atomic.Bool{}
	gate := stalledGate{KindGate: NewWatches(mgr.GetCache(), env.Client, mgr.GetRESTMapper()), kind: "ServiceAccount", stalled: stalled}
	e := New(Options{Owner: "loop-stalled", LiveFromCache: true, CycleTimeout: 5 * time.Second, Policy: diff.Policy{Mode: diff.ModeCorrect}}, Deps{
		Source: newDirSource(t, files), Reader: mgr.GetCache(), Client: env.Client, Mapper: mgr.GetRESTMapper(), Kinds: gate,
	})
	ctx := startManager(t, mgr)
	label := func() string {
		r := &rbacv1.Role{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reader"}, r); err != nil {
			t.Fatal(err)
		}
		return r.Labels["tier"]
	}
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 || label() != "gold" {
		t.Fatalf("first cycle: %v %v", err, res.Errors)
	}

	r := &rbacv1.Role{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reader"}, r); err != nil {
		t.Fatal(err)
	}
	r.Labels["tier"] = "bronze"
	if err := env.Client.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	stalled.Store(true)
	testenv.Eventually(t, 20*time.Second, "a cycle to set the Role's label back while ServiceAccounts do not sync", func() bool {
		res, err := e.Cycle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Complete {
			t.Fatalf("a cycle completed without the ServiceAccount checked: %+v", res)
		}
		return label() == "gold"
	})
}
