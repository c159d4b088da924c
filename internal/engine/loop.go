package engine

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/driftd/driftd/internal/diff"
)

// Loop runs an Engine inside a controller-runtime manager: a full cycle every interval, and a
// re-check of a single object as soon as a watch sees it change. It needs leader election, so only
// one replica corrects.
type Loop struct {
	engine    *Engine
	informers cache.Informers
	interval  time.Duration
	cloud     time.Duration
	log       logr.Logger

	queue   workqueue.TypedRateLimitingInterface[diff.Key]
	watched map[schema.GroupVersionKind]bool
}

// NewLoop returns a Loop; add it to a manager with mgr.Add. cloudInterval 0 leaves the cloud out.
func NewLoop(e *Engine, informers cache.Informers, interval, cloudInterval time.Duration, log logr.Logger) *Loop {
	return &Loop{engine: e, informers: informers, interval: interval, cloud: cloudInterval, log: log, watched: map[schema.GroupVersionKind]bool{}}
}

// NeedLeaderElection is true: only the leader compares and corrects.
func (l *Loop) NeedLeaderElection() bool { return true }

// Start runs cycles until ctx ends.
func (l *Loop) Start(ctx context.Context) error {
	l.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[diff.Key](),
		workqueue.TypedRateLimitingQueueConfig[diff.Key]{Name: "driftd"})
	defer l.queue.ShutDown()
	go l.work(ctx)

	if l.cloud > 0 {
		go l.cloudLoop(ctx)
	}
	ticker := time.NewTicker(l.interval)
	defer ticker.Stop()
	for {
		l.cycle(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// cloudLoop compares with the cloud every cloud interval, once the fleet has been rendered.
func (l *Loop) cloudLoop(ctx context.Context) {
	ticker := time.NewTicker(l.cloud)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		res, err := l.engine.CloudCycle(ctx)
		if err != nil {
			l.log.Error(err, "Cloud cycle failed")
			continue
		}
		for _, err := range res.Errors {
			l.log.Error(err, "Cloud cycle trouble")
		}
		l.log.Info("Cloud cycle done", "drifted", len(res.Findings))
	}
}

func (l *Loop) cycle(ctx context.Context) {
	res, err := l.engine.Cycle(ctx)
	if err != nil {
		l.log.Error(err, "Cycle failed")
		return
	}
	for _, err := range res.Errors {
		l.log.Error(err, "Cycle trouble", "revision", res.Revision)
	}
	l.log.Info("Cycle done", "revision", res.Revision, "drifted", len(res.Findings))
	l.watch(ctx)
}

// watch starts watching every rendered kind it does not watch yet.
func (l *Loop) watch(ctx context.Context) {
	for _, gvk := range l.engine.GVKs() {
		if l.watched[gvk] {
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		inf, err := l.informers.GetInformer(ctx, u)
		if err != nil {
			l.log.Error(err, "Cannot watch kind", "kind", gvk.String())
			continue
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			// The informer's first list: anything edited between the cycle and the watch is seen.
			AddFunc: func(obj any) {
				if u, ok := obj.(*unstructured.Unstructured); ok {
					l.enqueue(u)
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*unstructured.Unstructured)
				n, ok2 := newObj.(*unstructured.Unstructured)
				if ok1 && ok2 && o.GetResourceVersion() != n.GetResourceVersion() {
					l.enqueue(n)
				}
			},
			DeleteFunc: func(obj any) {
				if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
					obj = t.Obj
				}
				if u, ok := obj.(*unstructured.Unstructured); ok {
					l.enqueue(u)
				}
			},
		}); err != nil {
			l.log.Error(err, "Cannot watch kind", "kind", gvk.String())
			continue
		}
		l.watched[gvk] = true
	}
}

func (l *Loop) enqueue(u *unstructured.Unstructured) {
	key := diff.KeyOf(u)
	if l.engine.Tracks(key) {
		l.queue.Add(key)
	}
}

func (l *Loop) work(ctx context.Context) {
	for {
		key, shutdown := l.queue.Get()
		if shutdown {
			return
		}
		if err := l.engine.ReconcileObject(ctx, key); err != nil {
			l.log.Error(err, "Re-check failed", "object", key.String())
		}
		l.queue.Forget(key)
		l.queue.Done(key)
	}
}
