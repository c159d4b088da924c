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

// Result is the outcome of a cycle.
type Result struct {
	// Revision is the revision compared with, "<ref>@sha1:<sha>".
	Revision string `json:"revision"`
	// Findings are every drifted object, ordered by cluster, kind, namespace and name.
	Findings []diff.Finding `json:"findings"`
	// Errors are what went wrong without stopping the cycle: source and render trouble, objects
	// that could not be checked or corrected. Each names its file or object.
	Errors []error `json:"-"`
	// Complete: the cycle went through the whole fleet within its deadline (objects it could not
	// check are in Errors).
	Complete bool `json:"-"`

	corrected map[diff.Key]bool
}

// Remaining are the findings the cycle did not correct.
func (r *Result) Remaining() []diff.Finding {
	var out []diff.Finding
	for _, f := range r.Findings {
		if !r.corrected[keyOfRef(f.Object)] {
			out = append(out, f)
		}
	}
	return out
}

// Merge appends other's findings and errors to r and returns r.
func (r *Result) Merge(other *Result) *Result {
	r.Findings = append(r.Findings, other.Findings...)
	r.Errors = append(r.Errors, other.Errors...)
	for k := range other.corrected {
		r.markCorrected(k)
	}
	return r
}

func (r *Result) markCorrected(k diff.Key) {
	if r.corrected == nil {
		r.corrected = map[diff.Key]bool{}
	}
	r.corrected[k] = true
}

// Drifted reports whether any finding calls for attention (ignored ones do not).
func (r *Result) Drifted() bool {
	for _, f := range r.Findings {
		if f.Action != diff.ActionIgnored {
			return true
		}
	}
	return false
}

// Plan fetches, renders and compares, and returns what a cycle would do, writing nothing.
func (e *Engine) Plan(ctx context.Context) (*Result, error) {
	return e.run(ctx, false)
}

// Cycle runs one full cycle: fetch, render, compare every object stage by stage and correct it
// (unless a source or render failure, detect mode or the per-object opt-outs forbid it), then look
// for orphans and prune them last, and report. Objects that failed transiently are retried within
// the cycle and then handed to the workqueue (SetRequeue). Every cycle has a deadline.
func (e *Engine) Cycle(ctx context.Context) (*Result, error) {
	start := time.Now()
	res, err := e.run(ctx, true)
	if err != nil {
		return nil, err
	}
	e.deps.Metrics.CycleDuration.Observe(time.Since(start).Seconds())
	e.deps.Metrics.CycleEnded(res.Complete)
	return res, nil
}

// transientRetries are the in-cycle retries of objects that failed transiently, and the first wait.
const (
	transientRetries = 3
	transientWait    = 500 * time.Millisecond
)

func (e *Engine) run(parent context.Context, act bool) (*Result, error) {
	ctx, cancel := context.WithTimeout(parent, e.opts.CycleTimeout)
	defer cancel()
	s, errs, err := e.refresh(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Revision: s.revision, Errors: errs}
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
			res.markCorrected(key)
		}
	}

	// Stage by stage: Namespaces and CRDs first, then what lives in them.
	var failed map[diff.Key]error
	for stage := range 4 {
		keys := keysOfStage(s, stage)
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
		}
	}
	// Transient failures: a few quick retries within the cycle, then the workqueue's backoff.
	wait := transientWait
	for attempt := 0; attempt < transientRetries && len(failed) > 0 && ctx.Err() == nil; attempt++ {
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
	for _, key := range sortedKeys(failed) {
		err := failed[key]
		var kindErr *KindError
		if errors.As(err, &kindErr) {
			e.reportKind(kindErr)
		} else if act {
			e.requeueKey(key)
		}
		res.Errors = append(res.Errors, err)
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
		found[keyOfRef(f.Object)] = f
	}
	for k := range orphans.deleted {
		res.markCorrected(k)
	}

	res.Findings = sortedFindings(found)
	res.Complete = ctx.Err() == nil
	if ctx.Err() != nil {
		res.Errors = append(res.Errors, fmt.Errorf("the cycle did not finish within %s: %w", e.opts.CycleTimeout, ctx.Err()))
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

// each runs fn for every key on the engine's workers and returns the errors by key.
func (e *Engine) each(ctx context.Context, keys []diff.Key, fn func(diff.Key) error) map[diff.Key]error {
	var mu sync.Mutex
	errs := map[diff.Key]error{}
	work := make(chan diff.Key)
	var wg sync.WaitGroup
	for range min(e.opts.Workers, len(keys)) {
		wg.Go(func() {
			for key := range work {
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
			errs[key] = fmt.Errorf("%s: not checked: %w", key, ctx.Err())
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
	var out []diff.Key
	for _, key := range s.order {
		if s.desired[key].stage == stage || (stage == 3 && s.desired[key].stage > 3) {
			out = append(out, key)
		}
	}
	return out
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
	sortFindings(out)
	return out
}

func sortFindings(out []diff.Finding) {
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		if a.Object.Kind != b.Object.Kind {
			return a.Object.Kind < b.Object.Kind
		}
		if a.Object.Namespace != b.Object.Namespace {
			return a.Object.Namespace < b.Object.Namespace
		}
		return a.Object.Name < b.Object.Name
	})
}

// remaining is every finding driftd holds now: spec findings (from cycles and watch re-checks),
// generated MachineDeployments, orphans and the cloud.
func (e *Engine) remaining() []diff.Finding {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]diff.Finding, 0, len(e.findings)+len(e.topology)+len(e.orphaned)+len(e.cloudRemaining))
	for _, f := range e.findings {
		out = append(out, f)
	}
	for _, f := range e.topology {
		out = append(out, f)
	}
	out = append(out, e.orphaned...)
	out = append(out, e.cloudRemaining...)
	sortFindings(out)
	return out
}

// publishDrift sets the drift metrics to what remains.
func (e *Engine) publishDrift() { e.deps.Metrics.SetDrift(e.remaining()) }

// report writes the summary and the metrics of the cycle: the drift that remains after it. The
// status ConfigMap is written only when the summary changed.
func (e *Engine) report(ctx context.Context, res *Result) {
	e.publishDrift()
	if e.deps.Status == nil {
		return
	}
	e.mu.Lock()
	wait := e.statusWait
	e.mu.Unlock()
	if e.opts.Now().Before(wait) {
		return
	}
	errs := make([]string, 0, len(res.Errors))
	for _, err := range res.Errors {
		errs = append(errs, err.Error())
	}
	err := e.deps.Status.Write(ctx, report.Summarize(res.Revision, e.remaining(), errs))
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case errors.Is(err, report.ErrNoNamespace):
		// Said once, then retried with a growing wait: a driftd run from outside the cluster, where
		// config/ was never applied, must not fail the same write every cycle.
		if e.statusBackoff == 0 {
			e.deps.Log.Error(err, "The status ConfigMap cannot be written: its namespace does not exist. Apply config/ (it creates the namespace) or pass --namespace; drift is still reported as Events on the objects, in the log and the metrics",
				"namespace", e.deps.Status.Namespace())
			e.statusBackoff = time.Minute
		} else {
			e.statusBackoff = min(2*e.statusBackoff, 30*time.Minute)
		}
		e.statusWait = e.opts.Now().Add(e.statusBackoff)
	case err != nil:
		res.Errors = append(res.Errors, fmt.Errorf("writing the status ConfigMap: %w", err))
	default:
		if e.statusBackoff > 0 {
			e.deps.Log.Info("The status ConfigMap is written again", "namespace", e.deps.Status.Namespace())
		}
		e.statusBackoff, e.statusWait = 0, time.Time{}
	}
}

// statusWritable reports whether Events on the status ConfigMap can be recorded: there is one, and
// its namespace was not found missing.
func (e *Engine) statusWritable() bool {
	if e.deps.Status == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.statusBackoff == 0
}
