package cloud

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// act announces the plan's findings and carries out its replacements and pool restores. A finding
// the last cycle had and this one has not ended: if it comes back, it is a new occurrence.
func (r *Reconciler) act(ctx context.Context, sc *scope, plan diff.ReplacePlan, res *report.Result) {
	ledger := r.deps.Ledger
	r.announceSuspect(ctx, plan.Suspect)
	current := map[diff.Key]bool{}
	for _, f := range plan.Findings {
		current[f.Object.Key()] = true
	}
	ledger.Replace(report.SetCloud, current)
	byMachine := map[diff.Key]diff.Replacement{}
	for _, rp := range plan.Replacements {
		byMachine[diff.KeyOf(rp.Machine)] = rp
	}
	for _, f := range plan.Findings {
		key := f.Object.Key()
		entry := report.Entry{Set: report.SetCloud, Key: key}
		target := r.liveTarget(ctx, f.Object)
		announced := ledger.Drift(target, entry, f)
		switch {
		case f.Action == diff.ActionReplace:
			rp := byMachine[key]
			if err := r.replace(ctx, rp); err != nil {
				r.failed(res, target, entry, f, err)
				continue
			}
			ledger.Replaced(target, f, string(rp.Method))
			ledger.Settle(entry)
			res.MarkCorrected(key)
			r.deps.Log.Info("Cloud drift corrected", "object", f.Object.String(), "class", f.Class, "action", f.Action, "reason", f.Reason)
		case f.Action == diff.ActionApply && f.Class == diff.ClassNodePoolMismatch:
			if err := r.restorePool(ctx, sc, f); err != nil {
				ledger.Metrics().CloudErrors.WithLabelValues(f.Pool.Provider).Inc() // a cloud write that failed
				r.failed(res, target, entry, f, err)
				continue
			}
			ledger.Corrected(target, entry, f)
			res.MarkCorrected(key)
			r.deps.Log.Info("Cloud drift corrected", "object", f.Object.String(), "class", f.Class, "action", f.Action, "reason", f.Reason)
		case f.Action == diff.ActionBlocked && announced:
			ledger.Blocked(target, f)
		}
	}
}

func (r *Reconciler) failed(res *report.Result, target runtime.Object, entry report.Entry, f diff.Finding, err error) {
	res.Errors = append(res.Errors, err)
	r.deps.Ledger.Failed(target, entry, f, err, "")
}

// announceSuspect records an InventorySuspect Warning on each Cluster whose inventory is
// distrusted, once per occurrence.
func (r *Reconciler) announceSuspect(ctx context.Context, suspect map[string]string) {
	ledger := r.deps.Ledger
	for _, topic := range ledger.Topics("suspect/") {
		if _, still := suspect[strings.TrimPrefix(topic, "suspect/")]; !still {
			ledger.Withdraw(topic)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(suspect)) {
		ns, name, _ := strings.Cut(k, "/")
		target := r.liveTarget(ctx, diff.ObjectRef{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "Cluster", Namespace: ns, Name: name})
		if ledger.Announce(target, "suspect/"+k, suspect[k], report.ReasonInventorySuspect, suspect[k]) {
			r.deps.Log.Info("Inventory suspect: no replacement", "cluster", k, "reason", suspect[k])
		}
	}
}

// liveTarget is the object an Event about ref is recorded on: the live object when there is one.
func (r *Reconciler) liveTarget(ctx context.Context, ref diff.ObjectRef) runtime.Object {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(ref.APIVersion)
	u.SetKind(ref.Kind)
	u.SetNamespace(ref.Namespace)
	u.SetName(ref.Name)
	if live, err := r.deps.Fleet.Live(ctx, u); err == nil && live != nil {
		return live
	}
	return u
}

// replace asks for a Machine's replacement: the remediate annotation for its MachineHealthCheck
// (server-side apply of that annotation alone), or a delete for its MachineSet.
func (r *Reconciler) replace(ctx context.Context, rp diff.Replacement) error {
	m := rp.Machine
	if m == nil {
		return errors.New("no replacement was planned")
	}
	switch rp.Method {
	case diff.ReplaceRemediate:
		patch := &unstructured.Unstructured{}
		patch.SetGroupVersionKind(m.GroupVersionKind())
		patch.SetNamespace(m.GetNamespace())
		patch.SetName(m.GetName())
		patch.SetAnnotations(map[string]string{diff.AnnotationRemediateMachine: ""})
		if err := r.deps.Client.Patch(ctx, patch, client.Apply, client.FieldOwner(apply.FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("Machine %s/%s: annotating for remediation: %w", m.GetNamespace(), m.GetName(), err)
		}
		return nil
	case diff.ReplaceDelete:
		return apply.New(r.deps.Client).Delete(ctx, m).Err
	}
	return fmt.Errorf("Machine %s/%s: unknown replacement %q", m.GetNamespace(), m.GetName(), rp.Method)
}

// restorePool restores a node pool's sizes with its cluster's identity.
func (r *Reconciler) restorePool(ctx context.Context, sc *scope, f diff.Finding) error {
	if f.Pool == nil || f.Restore == nil {
		return errors.New("no node pool")
	}
	for _, inv := range r.opts.Inventories {
		restorer, ok := inv.(PoolRestorer)
		if !ok || inv.Provider() != f.Pool.Provider {
			continue
		}
		t, ok := sc.targets[f.Pool.Cluster]
		if !ok {
			return fmt.Errorf("cluster %s of node pool %s is not in scope", f.Pool.Cluster, f.Pool.Name)
		}
		return restorer.RestorePool(ctx, t.infra, f.Pool.Name, f.Restore.Desired, f.Restore.Min, f.Restore.Max)
	}
	return fmt.Errorf("provider %s cannot restore node pools", f.Pool.Provider)
}
