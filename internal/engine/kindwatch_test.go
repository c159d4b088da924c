package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/report"
)

// askedGate is a KindGate that remembers which kinds were asked for; the watch of kind first
// syncs only once kind then was asked for too — two lists the API server answers together, as
// it does when it is busy.
type askedGate struct {
	KindGate
	first, then string

	mu     sync.Mutex
	asked  map[string]bool
	signal chan struct{} // closed when then is asked for
}

func newAskedGate(inner KindGate, first, then string) *askedGate {
	return &askedGate{KindGate: inner, first: first, then: then, asked: map[string]bool{}, signal: make(chan struct{})}
}

func (g *askedGate) Ready(ctx context.Context, gvk schema.GroupVersionKind) error {
	g.mu.Lock()
	if gvk.Kind == g.then && !g.asked[gvk.Kind] {
		close(g.signal)
	}
	g.asked[gvk.Kind] = true
	g.mu.Unlock()
	if gvk.Kind == g.first {
		select {
		case <-g.signal:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.KindGate.Ready(ctx, gvk)
}

func (g *askedGate) wasAsked(kind string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.asked[kind]
}

func rbacFleet(ns, tier string) map[string]string {
	return map[string]string{
		"kustomization.yaml": "resources:\n- namespace.yaml\n- sa.yaml\n- role.yaml\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"sa.yaml":            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: " + ns + "\n",
		"role.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\n  namespace: " + ns +
			"\n  labels:\n    tier: " + tier + "\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n",
	}
}

// TestACycleStartsTheWatchesOfItsKindsTogether: a cycle starts the watch of every kind it renders
// before it reads any, so kinds are listed side by side, not one after another as the cycle comes
// to them. With one worker, the ServiceAccounts' watch syncs only once the Roles' was started:
// a cycle that starts a kind's watch only when it reads the kind waits on the first until its
// deadline and never checks the Role.
func TestACycleStartsTheWatchesOfItsKindsTogether(t *testing.T) {
	ns := "kinds-together"
	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	gate := newAskedGate(NewWatches(mgr.GetCache(), env.Client, mgr.GetRESTMapper()), "ServiceAccount", "Role")
	e := New(Options{Owner: "kinds-together", LiveFromCache: true, Workers: 1, CycleTimeout: 10 * time.Second, Policy: diff.Policy{Mode: diff.ModeCorrect}}, Deps{
		Source: newDirSource(t, rbacFleet(ns, "gold")), Reader: mgr.GetCache(), Client: env.Client, Mapper: mgr.GetRESTMapper(), Kinds: gate,
	})
	ctx := startManager(t, mgr)
	res, err := e.Cycle(ctx)
	if err != nil || !res.Complete || len(res.Errors) > 0 {
		t.Fatalf("the cycle: %v complete %v %v", err, res != nil && res.Complete, res.Errors)
	}
	r := &rbacv1.Role{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reader"}, r); err != nil || r.Labels["tier"] != "gold" {
		t.Fatalf("the Role after the cycle: %v %v", r.Labels, err)
	}
}

// blockedRender is a Renderer that holds its render until done says so (or a while passes), and
// says whether it had to wait out the while.
type blockedRender struct {
	done      func() bool
	waitedOut bool
}

func (r *blockedRender) Render(ctx context.Context, root, path string, background bool) (*render.Encoded, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !r.done() && !r.waitedOut {
		select {
		case <-deadline:
			r.waitedOut = true
		case <-tick.C:
		}
	}
	return inProcess{}.Render(ctx, root, path, background)
}

// TestARestartListsItsInventorysKindsWhileItRenders: a restarted driftd starts the watches of the
// kinds its stored inventory holds before its first render is done — a render of thousands of
// clusters takes a while, and the lists of their objects need not wait for it.
func TestARestartListsItsInventorysKindsWhileItRenders(t *testing.T) {
	ns := "kinds-restart"
	src := newDirSource(t, rbacFleet(ns, "gold"))
	ctx := context.Background()
	opts := Options{Owner: "kinds-restart", Policy: diff.Policy{Mode: diff.ModeCorrect}}
	first := New(opts, Deps{Source: src, Reader: env.Client, Client: env.Client, Mapper: env.Client.RESTMapper(),
		Inventory: NewInventoryStore(env.Client, ns, opts.Owner), Status: report.NewStatus(env.Client, ns, opts.Owner)})
	if res, err := first.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first driftd: %v %v", err, res.Errors)
	}

	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	gate := newAskedGate(NewWatches(mgr.GetCache(), env.Client, mgr.GetRESTMapper()), "", "")
	rendered := &blockedRender{done: func() bool { return gate.wasAsked("ServiceAccount") && gate.wasAsked("Role") }}
	opts.LiveFromCache = true
	restarted := New(opts, Deps{Source: src, Render: rendered, Reader: mgr.GetCache(), Client: env.Client, Mapper: mgr.GetRESTMapper(),
		Kinds: gate, Inventory: NewInventoryStore(env.Client, ns, opts.Owner), Status: report.NewStatus(env.Client, ns, opts.Owner)})
	mctx := startManager(t, mgr)
	res, err := restarted.Cycle(mctx)
	if err != nil || !res.Complete || len(res.Errors) > 0 || len(res.Findings) > 0 {
		t.Fatalf("restarted: %v %v %+v", err, res.Errors, res.Findings)
	}
	if rendered.waitedOut {
		t.Error("the render ended before the watches of the inventory's ServiceAccounts and Roles were started")
	}
}
