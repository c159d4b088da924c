package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/report"
)

// ErrNoRevision means no revision was ever fetched and rendered: there is nothing to compare with.
var ErrNoRevision = errors.New("no good revision of the fleet yet")

// Result is the outcome of a cycle.
type Result struct {
	// Revision is the revision compared with, "<ref>@sha1:<sha>".
	Revision string `json:"revision"`
	// Findings are every drifted object, ordered by cluster, kind, namespace and name.
	Findings []diff.Finding `json:"findings"`
	// Errors are what went wrong without stopping the cycle: source and render trouble, objects
	// that could not be checked or corrected. Each names its file or object.
	Errors []error `json:"-"`

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
		if r.corrected == nil {
			r.corrected = map[diff.Key]bool{}
		}
		r.corrected[k] = true
	}
	return r
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
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.plan(ctx)
}

// plan is Plan for a caller that holds the lock.
func (e *Engine) plan(ctx context.Context) (*Result, error) {
	res, err := e.refresh(ctx)
	if err != nil {
		return nil, err
	}
	e.evaluateAll(ctx, res)
	return res, nil
}

// Cycle runs one full cycle: fetch, render, compare, correct (unless a source or render failure,
// detect mode or the per-object opt-outs forbid it) and report.
func (e *Engine) Cycle(ctx context.Context) (*Result, error) {
	start := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.plan(ctx)
	if err != nil {
		return nil, err
	}
	e.correct(ctx, res)
	e.report(ctx, res)
	e.deps.Metrics.CycleDuration.Observe(time.Since(start).Seconds())
	e.deps.Metrics.LastCycle.SetToCurrentTime()
	return res, nil
}

// refresh fetches and renders when the source moved. A failure keeps the last good render and
// turns corrections off until a fetch and render succeed again.
func (e *Engine) refresh(ctx context.Context) (*Result, error) {
	log := e.deps.Log
	res := &Result{}
	co, err := e.deps.Source.Fetch(ctx)
	switch {
	case err != nil:
		e.degraded = "the source cannot be fetched"
		e.sourceTrouble(res, report.ReasonSourceFetchFailed, err)
	case co.Commit != e.commit:
		rendered, rerr := render.Render(co.Dir, e.opts.Path)
		switch {
		case errors.Is(rerr, render.ErrEmptyRender):
			e.degraded = "the render of " + co.Revision() + " is empty"
			e.sourceTrouble(res, report.ReasonEmptyRender, fmt.Errorf("%s: %w; keeping %s", co.Revision(), rerr, orNone(e.revision)))
		case rerr != nil:
			e.degraded = "the render of " + co.Revision() + " failed"
			e.sourceTrouble(res, report.ReasonRenderFailed, fmt.Errorf("%s: %w", co.Revision(), rerr))
		default:
			e.degraded = ""
			e.commit, e.revision = co.Commit, co.Revision()
			e.partial, e.renderErrs = rendered.Partial, rendered.Errors
			e.setDesired(rendered.Objects)
			if len(e.renderErrs) > 0 {
				res.Errors = append(res.Errors, e.renderErrs...)
				e.warn(report.ReasonRenderFailed, fmt.Errorf("%s rendered without the parts that failed: %w", co.Revision(), errors.Join(e.renderErrs...)))
			}
			e.deps.Metrics.SetRevision(e.revision)
			log.Info("Rendered the fleet", "revision", e.revision, "objects", len(e.desired), "partial", e.partial)
		}
	default:
		e.degraded = ""
		if len(e.renderErrs) > 0 {
			res.Errors = append(res.Errors, e.renderErrs...)
		}
	}
	if e.revision == "" {
		return nil, errors.Join(append(res.Errors, ErrNoRevision)...)
	}
	res.Revision = e.revision
	return res, nil
}

func orNone(rev string) string {
	if rev == "" {
		return "no revision"
	}
	return "the last good revision " + rev
}

func (e *Engine) sourceTrouble(res *Result, reason string, err error) {
	res.Errors = append(res.Errors, err)
	e.warn(reason, err)
}

// warn logs source-level trouble and records it as a Warning Event on the status ConfigMap.
func (e *Engine) warn(reason string, err error) {
	e.deps.Log.Error(err, "Source trouble", "reason", reason)
	if e.deps.Status != nil {
		e.deps.Events.Warning(e.deps.Status.Object(), reason, err.Error())
	}
}

// setDesired takes a new render: it defaults namespaces, hashes each object and checks that its
// kind is served. An object that cannot be used is reported with its file and left out.
func (e *Engine) setDesired(objs []render.Object) {
	desired := make(map[diff.Key]*desiredObject, len(objs))
	order := make([]diff.Key, 0, len(objs))
	var errs []error
	plain := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		obj := o.Unstructured
		mapping, err := e.deps.Mapper.RESTMapping(obj.GroupVersionKind().GroupKind(), obj.GroupVersionKind().Version)
		if err != nil {
			if meta.IsNoMatchError(err) {
				err = fmt.Errorf("unknown kind: no API or CRD serves %s", obj.GetAPIVersion())
			}
			errs = append(errs, fmt.Errorf("%s: %s %s: %w", o.File, obj.GetKind(), obj.GetName(), err))
			continue
		}
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace && obj.GetNamespace() == "" {
			obj.SetNamespace("default")
		}
		if mapping.Scope.Name() == meta.RESTScopeNameRoot {
			obj.SetNamespace("")
		}
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[diff.OwnerLabel] = e.opts.Owner
		obj.SetLabels(labels)
		key := diff.KeyOf(obj)
		if prev, dup := desired[key]; dup {
			errs = append(errs, fmt.Errorf("%s: %s is also rendered from %s; keeping the first", o.File, key, prev.file))
			continue
		}
		js, err := obj.MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", o.File, key, err))
			continue
		}
		desired[key] = &desiredObject{obj: obj, file: o.File, hash: hashObject(js)}
		order = append(order, key)
		plain = append(plain, obj)
		e.gvks[obj.GroupVersionKind()] = true
	}
	e.clusters = diff.IndexClusters(plain)
	if e.opts.Shard != nil {
		desired, order = e.shard(desired, order)
	}
	e.desired, e.order = desired, order
	e.renderErrs = append(e.renderErrs, errs...)
	for key := range e.memo {
		if _, ok := desired[key]; !ok {
			delete(e.memo, key)
		}
	}
}

// evaluateAll compares every desired object and looks for orphans.
func (e *Engine) evaluateAll(ctx context.Context, res *Result) {
	current := map[diff.Key]diff.Finding{}
	for _, key := range e.order {
		f, err := e.evaluate(ctx, key)
		if err != nil {
			res.Errors = append(res.Errors, err)
			continue
		}
		if f != nil {
			current[key] = *f
		}
	}
	topo, errs := e.topologyFindings(ctx)
	res.Errors = append(res.Errors, errs...)
	for key, f := range topo {
		current[key] = f
	}
	if !e.partial {
		orphans, err := e.orphans(ctx)
		res.Errors = append(res.Errors, err...)
		for key, f := range orphans {
			current[key] = f
		}
	}
	for key := range e.findings {
		if _, still := current[key]; !still {
			e.deps.Events.Forget(key)
		}
	}
	e.findings = current
	res.Findings = sortedFindings(current)
}

func sortedFindings(m map[diff.Key]diff.Finding) []diff.Finding {
	out := make([]diff.Finding, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
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
	return out
}

// shard keeps the objects of the Clusters the shard selector matches, and those of no cluster.
func (e *Engine) shard(desired map[diff.Key]*desiredObject, order []diff.Key) (map[diff.Key]*desiredObject, []diff.Key) {
	selected := map[string]bool{} // namespace/name of selected Clusters
	for key, d := range desired {
		if key.Group == "cluster.x-k8s.io" && key.Kind == "Cluster" && e.opts.Shard.Matches(labels.Set(d.obj.GetLabels())) {
			selected[key.Namespace+"/"+key.Name] = true
		}
	}
	kept := order[:0]
	for _, key := range order {
		cluster := e.clusters[key]
		if cluster == "" || selected[key.Namespace+"/"+cluster] {
			kept = append(kept, key)
			continue
		}
		delete(desired, key)
	}
	return desired, kept
}
