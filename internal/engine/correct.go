package engine

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// correct announces every finding once and makes the corrections it calls for, staged.
func (e *Engine) correct(ctx context.Context, res *Result) {
	var toApply []*unstructured.Unstructured
	byObject := map[*unstructured.Unstructured]diff.Finding{}
	for _, f := range res.Findings {
		key := keyOfRef(f.Object)
		target := e.eventTarget(ctx, key, f)
		e.deps.Events.Detected(target, key, f)
		switch f.Action {
		case diff.ActionApply, diff.ActionCreate:
			d := e.desired[key]
			live, err := e.getLive(ctx, d.obj)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Errorf("%s: reading %s: %w", d.file, key, err))
				continue
			}
			obj := e.toApply(d, live)
			toApply = append(toApply, obj)
			byObject[obj] = f
		case diff.ActionDelete:
			r := e.app.Delete(ctx, target.(*unstructured.Unstructured))
			e.corrected(ctx, res, target, key, f, r.Err)
		case diff.ActionBlocked:
			e.deps.Metrics.Corrections.WithLabelValues("blocked").Inc()
		}
	}
	for _, r := range e.app.Apply(ctx, toApply) {
		f := byObject[r.Object]
		key := keyOfRef(f.Object)
		e.corrected(ctx, res, r.Object, key, f, r.Err)
	}
}

func (e *Engine) corrected(ctx context.Context, res *Result, target runtime.Object, key diff.Key, f diff.Finding, err error) {
	if err != nil {
		res.Errors = append(res.Errors, err)
		e.deps.Events.Failed(target, key, f, err)
		e.deps.Metrics.Corrections.WithLabelValues("failed").Inc()
		e.deps.Log.Error(err, "Correction failed", "object", f.Object.String(), "class", f.Class)
		return
	}
	if res.corrected == nil {
		res.corrected = map[diff.Key]bool{}
	}
	res.corrected[key] = true
	// The Event is recorded on the object as it is now: its new resourceVersion keeps it apart
	// from earlier corrections, which the Event recorder would otherwise fold into one series
	// that keeps the first note.
	if u, ok := target.(*unstructured.Unstructured); ok && f.Action != diff.ActionDelete {
		if fresh, err := e.fromAPI(ctx, u); err == nil && fresh != nil {
			target = fresh
		}
	}
	e.deps.Events.Corrected(target, key, f)
	e.deps.Metrics.Corrections.WithLabelValues("succeeded").Inc()
	e.deps.Log.Info("Drift corrected", "object", f.Object.String(), "class", f.Class, "action", f.Action)
	delete(e.findings, key)
}

// eventTarget is the object an Event about f is recorded on: the live object when there is one.
func (e *Engine) eventTarget(ctx context.Context, key diff.Key, f diff.Finding) runtime.Object {
	if d, ok := e.desired[key]; ok {
		if live, err := e.getLive(ctx, d.obj); err == nil && live != nil {
			return live
		}
		return d.obj
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(f.Object.APIVersion)
	u.SetKind(f.Object.Kind)
	u.SetNamespace(f.Object.Namespace)
	u.SetName(f.Object.Name)
	if live, err := e.getLive(ctx, u); err == nil && live != nil {
		return live
	}
	return u
}

// report writes the summary and the metrics of the cycle: the drift that remains after it.
func (e *Engine) report(ctx context.Context, res *Result) {
	remaining := append(res.Remaining(), e.cloudRemaining...)
	e.deps.Metrics.SetDrift(remaining)
	if e.deps.Status == nil {
		return
	}
	errs := make([]string, 0, len(res.Errors))
	for _, err := range res.Errors {
		errs = append(errs, err.Error())
	}
	if err := e.deps.Status.Write(ctx, report.Summarize(res.Revision, remaining, errs)); err != nil {
		res.Errors = append(res.Errors, fmt.Errorf("writing the status ConfigMap: %w", err))
	}
}

func keyOfRef(r diff.ObjectRef) diff.Key {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(r.APIVersion)
	u.SetKind(r.Kind)
	u.SetNamespace(r.Namespace)
	u.SetName(r.Name)
	return diff.KeyOf(u)
}

// ReconcileObject re-checks one rendered object after a watch saw it change, and corrects it as a
// cycle would. Objects that are not rendered are ignored.
func (e *Engine) ReconcileObject(ctx context.Context, key diff.Key) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.desired[key]; !ok {
		return e.reconcileTopology(ctx, key)
	}
	f, err := e.evaluate(ctx, key)
	if err != nil {
		return err
	}
	return e.settle(ctx, key, f)
}

// settle records the re-checked finding of one object (nil: it no longer drifts) and announces and
// corrects it as a cycle would.
func (e *Engine) settle(ctx context.Context, key diff.Key, f *diff.Finding) error {
	if f == nil {
		if _, had := e.findings[key]; had {
			delete(e.findings, key)
			e.deps.Events.Forget(key)
		}
		return nil
	}
	e.findings[key] = *f
	res := &Result{Revision: e.revision, Findings: []diff.Finding{*f}}
	e.correct(ctx, res)
	return errors.Join(res.Errors...)
}
