package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// Plan fetches, renders and compares, and returns what a cycle would do, writing nothing.
func (e *Engine) Plan(ctx context.Context) (*report.Result, error) {
	return e.run(ctx, false)
}

// Cycle runs one full cycle: fetch, render, compare every object stage by stage and correct it
// (unless a source or render failure, detect mode or the per-object opt-outs forbid it), then look
// for orphans and prune them last, and report. Objects that failed transiently go to the
// workqueue (SetRequeue), whose backoff retries them; without one (run --once) the cycle retries
// them itself a few times. Every cycle has a deadline.
func (e *Engine) Cycle(ctx context.Context) (*report.Result, error) {
	start := time.Now()
	res, err := e.run(ctx, true)
	if err != nil {
		return nil, err
	}
	e.ledger.Metrics().CycleDuration.Observe(time.Since(start).Seconds())
	e.ledger.Metrics().CycleEnded(res.Complete)
	return res, nil
}

// transientRetries are the in-cycle retries of objects that failed transiently, and the first
// wait: only when no workqueue retries them (run --once, plan), so that one scheduler retries.
const (
	transientRetries = 3
	transientWait    = 500 * time.Millisecond
)

func (e *Engine) run(parent context.Context, act bool) (*report.Result, error) {
	// The fetch is bounded by the cycle's deadline; a render by its own (--render-timeout: a new
	// commit's, yielding the CPU, may take longer on the clock than a cycle), and the cycle's
	// deadline starts again once its snapshot is there.
	fctx, fcancel := context.WithTimeout(parent, e.opts.CycleTimeout)
	watches := e.watchKinds(parent)
	defer watches.stop()
	if e.snap.Load() == nil {
		// The first render, which takes a while at thousands of clusters: the kinds of driftd's
		// inventory are listed meanwhile.
		watches.start(e.inventoryKinds(fctx))
	}
	s, errs, err := e.refresh(fctx, parent)
	fcancel()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(parent, e.opts.CycleTimeout)
	defer cancel()
	watches.start(s.kinds)
	res := &report.Result{Revision: s.revision, Errors: errs}
	if e.pace != nil {
		e.pace.unseal()
	}
	found := map[diff.Key]diff.Finding{}
	unusable := map[diff.Key]bool{} // objects the API server refuses outright
	var mu sync.Mutex
	record := func(key diff.Key, out outcome) {
		mu.Lock()
		defer mu.Unlock()
		if out.unusable {
			unusable[key] = true
		} else {
			delete(unusable, key)
		}
		if out.finding != nil {
			found[key] = *out.finding
		} else {
			delete(found, key)
		}
		if out.corrected {
			res.MarkCorrected(key)
		}
	}

	// Stage by stage: Namespaces and CRDs first, then what lives in them.
	var failed map[diff.Key]error
	for stage := range 4 {
		keys := e.unsettled(ctx, s, keysOfStage(s, stage))
		failed = mergeErrs(failed, e.each(ctx, keys, func(key diff.Key) error {
			out := e.reconcileKey(ctx, s, key, act)
			record(key, out)
			return out.err
		}))
		if stage == 0 && act && len(s.pending) > 0 {
			// The CRDs of the render exist now: resolve the objects of their kinds.
			e.waitForKinds(ctx, s)
			s = e.resolvePending()
			res.Revision = s.revision
			watches.start(s.kinds)
		}
	}
	if e.pace != nil {
		// Every Cluster that wants to roll is known now: the waves' first turns are given out to
		// the changes held until this moment.
		e.pace.seal(ctx, e, s)
		var held []diff.Key
		for key, f := range found {
			if f.Action == diff.ActionHeld {
				held = append(held, key)
			}
		}
		sort.Slice(held, func(i, j int) bool { return held[i].String() < held[j].String() })
		failed = mergeErrs(failed, e.each(ctx, held, func(key diff.Key) error {
			out := e.reconcileKey(ctx, s, key, act)
			record(key, out)
			if l := e.lookAgain.Load(); act && l != nil && out.finding != nil && out.finding.Action == diff.ActionHeld {
				(*l)(key, paceRecheck) // its turn may come before the next cycle
			}
			return out.err
		}))
	}
	// A kind driftd may not read is not retried: its permission is asked again a minute on.
	forbidden := map[diff.Key]error{}
	for key, err := range failed {
		var kindErr *KindError
		if errors.As(err, &kindErr) {
			forbidden[key] = err
			delete(failed, key)
		}
	}
	// Transient failures: the workqueue's backoff retries them; without a workqueue, a few quick
	// retries within the cycle.
	retries := transientRetries
	if act && e.requeue.Load() != nil {
		retries = 0
	}
	wait := transientWait
	for attempt := 0; attempt < retries && len(failed) > 0 && ctx.Err() == nil; attempt++ {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait *= 2
		retry := sortedKeys(failed)
		failed = e.each(ctx, retry, func(key diff.Key) error {
			out := e.reconcileKey(ctx, s, key, act)
			record(key, out)
			return out.err
		})
	}
	notChecked := 0
	for _, key := range sortedKeys(failed) {
		err := failed[key]
		var kindErr *KindError
		switch {
		case errors.Is(err, errNotChecked):
			// The cycle ran out of time before it: the next cycle takes it, in its stage's turn
			// (the workqueue would take them all at once, beside that cycle), and one error says
			// how many.
			notChecked++
			continue
		case errors.As(err, &kindErr): // forbidden on a retry
			e.reportKind(kindErr)
		case act:
			e.requeueKey(key)
		}
		res.Errors = append(res.Errors, err)
	}
	for _, key := range sortedKeys(forbidden) {
		var kindErr *KindError
		errors.As(forbidden[key], &kindErr)
		e.reportKind(kindErr)
		res.Errors = append(res.Errors, forbidden[key])
		failed[key] = forbidden[key] // unchecked: no orphan is looked for
	}

	topo, topoErrs := e.topologyFindings(ctx, s, act)
	res.Errors = append(res.Errors, topoErrs...)
	for key, f := range topo {
		found[key] = f
	}

	// Orphans last: everything rendered was applied before anything is deleted.
	orphans, orphanErrs := e.prune(ctx, s, act, len(failed) > 0 || len(unusable) > 0)
	res.Errors = append(res.Errors, orphanErrs...)
	for _, f := range orphans.findings {
		found[f.Object.Key()] = f
	}
	for k := range orphans.deleted {
		res.MarkCorrected(k)
	}

	res.Findings = sortedFindings(found)
	res.Complete = ctx.Err() == nil
	if ctx.Err() != nil {
		res.Errors = append(res.Errors, fmt.Errorf("the cycle did not finish within %s, %d objects not checked: %w", e.opts.CycleTimeout, notChecked, ctx.Err()))
	}
	if act {
		if e.opts.Policy.Mode == diff.ModeCorrect && res.Complete {
			e.recordInventory(parent, s, orphans.deleted, orphans.gone)
		}
		e.report(parent, res)
		e.saveClean(parent, s)
	}
	return res, nil
}

// unsettled returns the keys of s that need a worker: all but those the cache shows as they were
// found equal to Git. That check costs no request, only a little CPU, so it runs here on the
// cycle's own goroutine, one key after another: a quiet cycle holds one core, not every worker
// at once, and a correction after a watch event (the workqueue's) or the API server is not kept
// waiting behind it. keys is not changed; the keys left are returned in its order.
func (e *Engine) unsettled(ctx context.Context, s *snapshot, keys []diff.Key) []diff.Key {
	var left []diff.Key
	for i, key := range keys {
		if ctx.Err() != nil { // the workers report what was not checked
			return append(left, keys[i:]...)
		}
		if !e.settled(ctx, s, key) {
			left = append(left, key)
		}
	}
	return left
}

// errNotChecked is the error of an object a cycle did not reach before its context ended.
var errNotChecked = errors.New("not checked")

func notChecked(ctx context.Context, key diff.Key) error {
	return fmt.Errorf("%s: %w: %w", key, errNotChecked, ctx.Err())
}

// each runs fn for every key on the engine's workers and returns the errors by key.
func (e *Engine) each(ctx context.Context, keys []diff.Key, fn func(diff.Key) error) map[diff.Key]error {
	var mu sync.Mutex
	errs := map[diff.Key]error{}
	work := make(chan diff.Key)
	var wg sync.WaitGroup
	for range min(e.opts.Workers, len(keys)) {
		wg.Go(func() {
			for key := range work {
				if ctx.Err() != nil { // handed over as the deadline came
					mu.Lock()
					errs[key] = notChecked(ctx, key)
					mu.Unlock()
					continue
				}
				if err := fn(key); err != nil {
					mu.Lock()
					errs[key] = err
					mu.Unlock()
				}
			}
		})
	}
	for _, key := range keys {
		if ctx.Err() != nil {
			mu.Lock()
			errs[key] = notChecked(ctx, key)
			mu.Unlock()
			continue
		}
		work <- key
	}
	close(work)
	wg.Wait()
	return errs
}

func keysOfStage(s *snapshot, stage int) []diff.Key {
	// s.order is sorted by stage: a stage is a run of it, found in a few lookups (the last
	// stage takes every later one). Shared with the snapshot; read only.
	from := sort.Search(len(s.order), func(i int) bool { return s.desired[s.order[i]].stage >= stage })
	to := len(s.order)
	if stage < 3 {
		to = sort.Search(len(s.order), func(i int) bool { return s.desired[s.order[i]].stage > stage })
	}
	return s.order[from:to]
}

func mergeErrs(a, b map[diff.Key]error) map[diff.Key]error {
	if a == nil {
		a = map[diff.Key]error{}
	}
	for k, v := range b {
		a[k] = v
	}
	return a
}

func sortedKeys(m map[diff.Key]error) []diff.Key {
	out := make([]diff.Key, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func sortedFindings(m map[diff.Key]diff.Finding) []diff.Finding {
	out := make([]diff.Finding, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	report.SortFindings(out)
	return out
}

// report writes the summary and the metrics of the cycle: the drift that remains after it (of
// every set: objects, generated MachineDeployments, orphans, the cloud). The status ConfigMap is
// written only when the summary changed.
func (e *Engine) report(ctx context.Context, res *report.Result) {
	e.ledger.Publish()
	if e.deps.Status == nil {
		return
	}
	errs := make([]string, 0, len(res.Errors))
	for _, err := range res.Errors {
		errs = append(errs, err.Error())
	}
	if err := e.deps.Status.Write(ctx, report.Summarize(res.Revision, e.ledger.Remaining(), errs)); err != nil {
		res.Errors = append(res.Errors, fmt.Errorf("writing the status ConfigMap: %w", err))
	}
}

// statusWritable reports whether the status ConfigMap, and Events on it, can be written.
func (e *Engine) statusWritable() bool {
	return e.deps.Status != nil && e.deps.Status.Writable()
}
