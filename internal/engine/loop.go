package engine

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// LoopOptions configure the daemon.
type LoopOptions struct {
	// Interval is the time between full cycles. Required.
	Interval time.Duration
	// CloudInterval is the time between comparisons with the cloud; 0 leaves the cloud out.
	CloudInterval time.Duration
	// Cloud is the cloud reconciler (internal/cloud) run every CloudInterval; nil leaves the cloud
	// out.
	Cloud Cycler
	// Concurrency is how many objects are reconciled at once after watch events; 2 when zero.
	Concurrency int
	// RetryBase and RetryMax bound the backoff of an object whose reconcile failed transiently
	// (doubling from RetryBase); one second and five minutes when zero.
	RetryBase, RetryMax time.Duration
}

// Cycler is a reconciler run on an interval: the cloud reconciler.
type Cycler interface {
	Cycle(ctx context.Context) (*report.Result, error)
}

// Loop runs an Engine inside a controller-runtime manager: a controller whose reconciler is the
// engine's per-object path, fed by watches of every rendered kind (a change is re-checked within
// moments) and by the engine's own transient failures (retried with backoff); a full cycle every
// interval; and the cloud comparison on its own interval. All of it runs on the elected leader only.
type Loop struct {
	engine  *Engine
	watches *Watches
	cache   cache.Cache
	opts    LoopOptions
	log     logr.Logger
	ctrl    controller.TypedController[diff.Key]

	queue   atomic.Pointer[workqueue.TypedRateLimitingInterface[diff.Key]]
	watchMu sync.Mutex
	watched map[schema.GroupVersionKind]bool
	// leading is when this replica began to run cycles (it was elected), lastSuccess when its
	// last complete cycle ended; Unix nanoseconds, 0 for never.
	leading, lastSuccess atomic.Int64
}

// NewLoop adds the daemon to mgr: the engine e reads through mgr's cache behind w.
func NewLoop(mgr manager.Manager, e *Engine, w *Watches, o LoopOptions, log logr.Logger) (*Loop, error) {
	if o.Interval <= 0 {
		return nil, fmt.Errorf("the interval must be positive, got %s", o.Interval)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Minute
	}
	l := &Loop{engine: e, watches: w, cache: mgr.GetCache(), opts: o, log: log, watched: map[schema.GroupVersionKind]bool{}}
	skip := true
	c, err := controller.NewTyped[diff.Key]("driftd", mgr, controller.TypedOptions[diff.Key]{
		Reconciler:              e,
		MaxConcurrentReconciles: o.Concurrency,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[diff.Key](o.RetryBase, o.RetryMax),
		// Tests run several daemons in one process; one driftd runs one controller.
		SkipNameValidation: &skip,
		LogConstructor: func(key *diff.Key) logr.Logger {
			if key == nil {
				return log
			}
			return log.WithValues("object", key.String())
		},
	})
	if err != nil {
		return nil, err
	}
	l.ctrl = c
	// The controller's queue, for the cycle to hand over what failed transiently.
	if err := c.Watch(source.TypedFunc[diff.Key](func(_ context.Context, q workqueue.TypedRateLimitingInterface[diff.Key]) error {
		l.queue.Store(&q)
		return nil
	})); err != nil {
		return nil, err
	}
	e.SetRequeue(func(key diff.Key) {
		if q := l.queue.Load(); q != nil {
			(*q).AddRateLimited(key)
		}
	})
	e.SetLookAgain(func(key diff.Key, after time.Duration) {
		if q := l.queue.Load(); q != nil {
			(*q).AddAfter(key, after)
		}
	})
	w.OnReady = l.watch
	if err := mgr.Add(leaderRunnable(l.cycles)); err != nil {
		return nil, err
	}
	if o.CloudInterval > 0 && o.Cloud != nil {
		if err := mgr.Add(leaderRunnable(l.cloudCycles)); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// leaderRunnable is a function the manager runs on the elected leader only.
type leaderRunnable func(context.Context) error

func (f leaderRunnable) Start(ctx context.Context) error { return f(ctx) }
func (leaderRunnable) NeedLeaderElection() bool          { return true }

// cycles runs a full cycle every interval until ctx ends.
func (l *Loop) cycles(ctx context.Context) error {
	l.leading.Store(time.Now().UnixNano())
	defer l.leading.Store(0)
	ticker := time.NewTicker(l.opts.Interval)
	defer ticker.Stop()
	for {
		l.cycle(ctx)
		select {
		case <-ctx.Done():
			l.saveVerdicts(ctx)
			return nil
		case <-ticker.C:
		}
	}
}

// saveVerdicts stores the clean verdicts once more as driftd stops (SIGTERM, or the manager
// stopping): what was corrected since the last cycle's end is then not dry-run again after the
// restart. The lease is still held here: the manager releases it once its runnables returned.
func (l *Loop) saveVerdicts(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	l.engine.SaveVerdicts(sctx)
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
	if res.Complete {
		l.lastSuccess.Store(time.Now().UnixNano())
	}
	l.log.Info("Cycle done", "revision", res.Revision, "drifted", len(res.Remaining()), "complete", res.Complete)
}

// cloudCycles compares with the cloud every cloud interval, once the fleet has been rendered.
func (l *Loop) cloudCycles(ctx context.Context) error {
	ticker := time.NewTicker(l.opts.CloudInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		res, err := l.opts.Cloud.Cycle(ctx)
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

// watch starts watching a kind the engine reads: a change of one of its objects enqueues that
// object (when rendered) and, for a Cluster, the objects of that cluster.
func (l *Loop) watch(gvk schema.GroupVersionKind) {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	if l.watched[gvk] {
		return
	}
	toKeys := handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []diff.Key {
		key := diff.Key{Group: gvk.Group, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}
		var out []diff.Key
		if l.engine.Tracks(key) {
			out = append(out, key)
		}
		return append(out, l.engine.PartsOf(key)...)
	})
	src := source.TypedKind[client.Object, diff.Key](l.cache, cached(gvk, l.watches.Cloud), toKeys,
		predicate.TypedResourceVersionChangedPredicate[client.Object]{})
	if err := l.ctrl.Watch(src); err != nil {
		l.log.Error(err, "Cannot watch kind", "kind", gvk.String())
		return
	}
	l.watched[gvk] = true
}

// Ready is the readiness check: a leader that has completed no cycle for three intervals is not
// ready (a standby replica is).
func (l *Loop) Ready(_ *http.Request) error {
	started := l.leading.Load()
	if started == 0 {
		return nil
	}
	last := max(l.lastSuccess.Load(), started)
	if since := time.Since(time.Unix(0, last)); since > 3*l.opts.Interval {
		return fmt.Errorf("no cycle has completed for %s (more than 3 intervals of %s)", since.Round(time.Second), l.opts.Interval)
	}
	return nil
}
