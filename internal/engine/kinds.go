package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// CacheTransform is the daemon cache's transform: no object keeps its managedFields (driftd asks
// the API for them when it found drift), and Machines and providers' machines keep only what is
// read of them from the cache (diff.TrimCached).
func CacheTransform() toolscache.TransformFunc {
	strip := cache.TransformStripManagedFields()
	return func(obj any) (any, error) {
		obj, err := strip(obj)
		if u, ok := obj.(*unstructured.Unstructured); ok && err == nil {
			diff.TrimCached(u)
		}
		return obj, err
	}
}

// KindError says driftd may not list or watch a kind: its objects are not checked, and the rest
// of the fleet is.
type KindError struct {
	GVK      schema.GroupVersionKind
	Resource schema.GroupResource
	// Verbs are the verbs driftd lacks.
	Verbs []string
}

func (e *KindError) Error() string {
	return fmt.Sprintf("driftd may not %v %s, so its objects are not checked; grant its ClusterRole the rule {apiGroups: [%q], resources: [%q], verbs: [get, list, watch]}",
		e.Verbs, e.Resource, e.Resource.Group, e.Resource.Resource)
}

// Watches is the daemon's KindGate: before the engine reads a kind from the cache, it checks that
// driftd may list and watch it (a SelfSubjectAccessReview per verb, once), starts the informer and
// waits for it to sync, with a time limit. A kind driftd may not watch is never handed to the
// cache, whose informer would otherwise retry its list for ever while every read of the kind waits
// for a sync that never comes.
type Watches struct {
	cache  cache.Cache
	client client.Client
	mapper meta.RESTMapper
	// SyncTimeout is how long Ready waits for a new informer to sync; 30 s when zero.
	SyncTimeout time.Duration
	// OnReady is called once for every kind that became readable (the daemon watches it then).
	OnReady func(schema.GroupVersionKind)
	// Cloud says the comparison with the cloud reads the fleet from the cache: the kinds it reads
	// are cached whole (diff.MetadataOnly). It must equal the engine's Options.Cloud.
	Cloud bool

	mu    sync.Mutex
	kinds map[schema.GroupVersionKind]*kindWatch
}

type kindWatch struct {
	mu        sync.Mutex
	ready     atomic.Bool // read without mu by Serving
	forbidden *KindError
	checked   time.Time
}

// NewWatches returns a gate over c (the manager's cache), checking permissions through cl.
func NewWatches(c cache.Cache, cl client.Client, mapper meta.RESTMapper) *Watches {
	return &Watches{cache: c, client: cl, mapper: mapper, kinds: map[schema.GroupVersionKind]*kindWatch{}}
}

// recheckForbidden is how long a kind found forbidden stays so before its permission is asked again.
const recheckForbidden = time.Minute

// Ready implements KindGate.
func (w *Watches) Ready(ctx context.Context, gvk schema.GroupVersionKind) error {
	w.mu.Lock()
	k := w.kinds[gvk]
	if k == nil {
		k = &kindWatch{}
		w.kinds[gvk] = k
	}
	w.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ready.Load() {
		return nil
	}
	if k.forbidden != nil && time.Since(k.checked) < recheckForbidden {
		return k.forbidden
	}
	mapping, err := w.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	k.forbidden, k.checked = nil, time.Now()
	var denied []string
	for _, verb := range []string{"list", "watch"} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: gvk.Group, Resource: mapping.Resource.Resource},
		}}
		if err := w.client.Create(ctx, review); err != nil {
			return fmt.Errorf("asking whether driftd may %s %s: %w", verb, mapping.Resource.GroupResource(), err)
		}
		if !review.Status.Allowed {
			denied = append(denied, verb)
		}
	}
	if len(denied) > 0 {
		k.forbidden = &KindError{GVK: gvk, Resource: mapping.Resource.GroupResource(), Verbs: denied}
		return k.forbidden
	}
	inf, err := w.cache.GetInformer(ctx, cached(gvk, w.Cloud), cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("watching %s: %w", gvk.Kind, err)
	}
	timeout := w.SyncTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !inf.HasSynced() {
		select {
		case <-sctx.Done():
			return fmt.Errorf("the watch of %s has not synced within %s; its objects are checked once it has", mapping.Resource.GroupResource(), timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
	k.ready.Store(true)
	if w.OnReady != nil {
		w.OnReady(gvk)
	}
	return nil
}

// Serving implements KindGate: a kind whose Ready is under way (its informer syncing) is not
// served yet.
func (w *Watches) Serving(gvk schema.GroupVersionKind) bool {
	w.mu.Lock()
	k := w.kinds[gvk]
	w.mu.Unlock()
	return k != nil && k.ready.Load()
}

// cached is the object the daemon's cache holds of gvk: its metadata for a kind diff.MetadataOnly
// names, the whole object otherwise. Every informer of the kind is started with it, so that one
// kind is never held twice.
func cached(gvk schema.GroupVersionKind, cloud bool) client.Object {
	if diff.MetadataOnly(gvk, cloud) {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(gvk)
		return m
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// reportKind says once, as a Warning Event on the status ConfigMap and in the log, that a kind
// cannot be watched and which RBAC rule is missing.
func (e *Engine) reportKind(err *KindError) {
	if e.ledger.Announce(nil, "kind/"+err.GVK.String(), "forbidden", report.ReasonKindNotWatched, err.Error()) {
		e.deps.Log.Error(err, "Kind not watched", "kind", err.GVK.String())
	}
}

// waitForKinds waits (a little) until the API server serves the kinds the render's CRDs define.
func (e *Engine) waitForKinds(ctx context.Context, s *snapshot) {
	deadline := time.Now().Add(30 * time.Second)
	for _, key := range s.pending {
		gvk := s.desired[key].gvk
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if _, err := e.deps.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// kindWatches starts the watches of kinds a cycle is about to read, all at once, and waits for
// none of them: whoever reads a kind waits for its own (KindGate.Ready), and a kind's error
// (forbidden, not served) is its reader's to report. Without it the kinds are listed one after
// another, as the cycle's stages come to them — on a restart at 10,000 clusters, ten lists of
// up to 110,000 objects in a row.
type kindWatches struct {
	gate    KindGate // nil: nothing to start
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started map[schema.GroupVersionKind]bool
}

// watchKinds returns the cycle's kindWatches; its stop ends the waits still under way (the
// watches stay) and returns once they did.
func (e *Engine) watchKinds(ctx context.Context) *kindWatches {
	ctx, cancel := context.WithCancel(ctx)
	return &kindWatches{gate: e.deps.Kinds, ctx: ctx, cancel: cancel, started: map[schema.GroupVersionKind]bool{}}
}

func (w *kindWatches) start(kinds []schema.GroupVersionKind) {
	if w.gate == nil {
		return
	}
	for _, gvk := range kinds {
		if w.started[gvk] || w.gate.Serving(gvk) {
			continue
		}
		w.started[gvk] = true
		w.wg.Go(func() { _ = w.gate.Ready(w.ctx, gvk) })
	}
}

func (w *kindWatches) stop() {
	w.cancel()
	w.wg.Wait()
}

// inventoryKinds are the kinds of driftd's inventory, each once; none when it cannot be read
// (the cycle's prune says why).
func (e *Engine) inventoryKinds(ctx context.Context) []schema.GroupVersionKind {
	if e.deps.Kinds == nil {
		return nil
	}
	inv, err := e.inventoryNow(ctx)
	if err != nil {
		return nil
	}
	seen := map[schema.GroupVersionKind]bool{}
	var kinds []schema.GroupVersionKind
	for key, o := range inv {
		if gvk := o.gvk(key); !seen[gvk] {
			seen[gvk] = true
			kinds = append(kinds, gvk)
		}
	}
	return kinds
}
