package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// pruned is what the orphan search found and did.
type pruned struct {
	findings []diff.Finding
	deleted  map[diff.Key]bool
	// gone are inventory entries whose object no longer exists as driftd recorded it.
	gone map[diff.Key]bool
}

// prune looks for orphans (objects of driftd's inventory that no shard renders any more), has diff decide what may go, and deletes that when act is set. It runs last in a
// cycle, after every rendered object was applied. A partial render (or one with an object the API
// server rejects) looks for no orphan at all: an object that could not be used might be the very
// one a live object is.
func (e *Engine) prune(ctx context.Context, s *snapshot, act, unusable bool) (pruned, []error) {
	out := pruned{deleted: map[diff.Key]bool{}}
	if s.partial || unusable {
		// No orphan is known now; what was announced of them stays announced.
		e.ledger.SettleAll(report.SetOrphans)
		return out, nil
	}
	orphans, gone, errs := e.orphans(ctx, s)
	out.gone = gone
	e.markInUse(ctx, orphans)
	in := diff.PruneInput{
		Orphans: orphans, Clusters: e.clusterStates(ctx, s, orphans), Tracked: len(s.desired) + len(orphans),
		Limit: e.opts.PruneLimit, Policy: e.opts.Policy, Degraded: s.degraded,
	}
	plan := diff.DecidePrune(in)
	out.findings = plan.Findings
	if act {
		if plan.Held == 0 {
			e.ledger.Withdraw("prune")
		} else {
			note := fmt.Sprintf("Revision %s: %d deletions held back: %s. Nothing was deleted; raise the limit (--max-prune, --max-prune-percent) to let them go.",
				s.revision, plan.Held, plan.HeldReason)
			if e.ledger.Announce(nil, "prune", fmt.Sprintf("%s/%d", s.revision, plan.Held), report.ReasonPruneBlocked, note) {
				e.deps.Log.Info("Prune held back", "revision", s.revision, "deletions", plan.Held, "reason", plan.HeldReason)
			}
		}
	}
	byKey := map[diff.Key]*unstructured.Unstructured{}
	for _, o := range orphans {
		byKey[diff.KeyOf(o.Object)] = o.Object
	}
	still := map[diff.Key]bool{}
	for _, f := range plan.Findings {
		key := f.Object.Key()
		entry := report.Entry{Set: report.SetOrphans, Key: key}
		live := byKey[key]
		if !act {
			continue
		}
		if e.ledger.Drift(live, entry, f) && f.Action == diff.ActionBlocked {
			e.ledger.Blocked(live, f)
		}
		still[key] = true
		if f.Action != diff.ActionDelete {
			continue
		}
		if r := e.app.Delete(ctx, live); r.Err != nil {
			errs = append(errs, r.Err)
			e.ledger.Failed(live, entry, f, r.Err, "")
			continue
		}
		out.deleted[key] = true
		delete(still, key)
		e.ledger.Corrected(live, entry, f)
		e.deps.Log.Info("Orphan deleted", "object", key.String())
	}
	if act {
		e.ledger.Replace(report.SetOrphans, still)
	}
	return out, errs
}

// orphans lists the objects of driftd's inventory that no shard renders any more and that still
// exist with the UID driftd recorded. Only the inventory makes an object driftd's: a label, an
// annotation or a copy a controller made never does. It also returns the inventory entries found
// gone (deleted, or replaced by another object of the same name), which leave the inventory.
func (e *Engine) orphans(ctx context.Context, s *snapshot) ([]diff.Orphan, map[diff.Key]bool, []error) {
	inv, err := e.inventoryNow(ctx)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("%w (%v): no orphan is looked for", errInventory, err)}
	}
	var found []*unstructured.Unstructured
	gone := map[diff.Key]bool{}
	var errs []error
	keys := make([]diff.Key, 0, len(inv))
	for k := range inv {
		if !s.rendered[k] {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		ent := inv[k]
		gvk := ent.gvk(k)
		if _, err := e.deps.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			// That version is not served any more: the server's preferred one.
			mapping, err := e.deps.Mapper.RESTMapping(gvk.GroupKind())
			if err != nil {
				if meta.IsNoMatchError(err) {
					gone[k] = true // the kind is gone, and its objects with it
				} else {
					errs = append(errs, fmt.Errorf("looking for orphaned %s: %w", k, err))
				}
				continue
			}
			gvk = mapping.GroupVersionKind
		}
		ref := &unstructured.Unstructured{}
		ref.SetGroupVersionKind(gvk)
		ref.SetNamespace(k.Namespace)
		ref.SetName(k.Name)
		live, err := e.getLive(ctx, ref)
		if err != nil {
			var kindErr *KindError
			if errors.As(err, &kindErr) {
				e.reportKind(kindErr)
			}
			errs = append(errs, fmt.Errorf("looking for orphaned %s: %w", k, err))
			continue
		}
		if live == nil || live.GetUID() != ent.UID {
			gone[k] = true // deleted, or another object of that name: not driftd's
			continue
		}
		// Whole: what an orphan refers to tells the cluster of the others (a control plane's
		// machine template). Orphans are few; a kind cached as metadata is read from the API.
		if live, err = e.whole(ctx, live); err != nil || live == nil {
			if err != nil {
				errs = append(errs, fmt.Errorf("looking for orphaned %s: %w", k, err))
			} else {
				gone[k] = true
			}
			continue
		}
		found = append(found, live)
	}
	// The cluster of each orphan: from an earlier render, the inventory, its own labels or owner
	// references, or what the other orphans (a Cluster, its control plane, its MachineDeployments)
	// refer to.
	index := diff.IndexClusters(found)
	out := make([]diff.Orphan, 0, len(found))
	e.mu.Lock()
	for _, live := range found {
		key := diff.KeyOf(live)
		cluster := e.known[key]
		if cluster == "" {
			cluster = inv[key].Cluster
		}
		if cluster == "" {
			cluster = diff.OwningCluster(live)
		}
		if cluster == "" {
			cluster = index[key]
		}
		out = append(out, diff.Orphan{Object: live, Cluster: cluster})
	}
	e.mu.Unlock()
	return out, gone, errs
}

// inventoryNow returns driftd's inventory, read from its store the first time (an engine without a
// store keeps one in memory, starting empty).
func (e *Engine) inventoryNow(ctx context.Context) (Owned, error) {
	e.mu.Lock()
	inv := e.inventory
	e.mu.Unlock()
	if inv != nil {
		return inv, nil
	}
	inv = Owned{}
	if e.deps.Inventory != nil {
		var err error
		if inv, err = e.deps.Inventory.Load(ctx); err != nil {
			return nil, err
		}
	}
	e.mu.Lock()
	e.inventory, e.inventoryStored = inv, e.deps.Inventory != nil
	e.mu.Unlock()
	return inv, nil
}

// recordInventory updates the inventory after a correcting cycle: every object of the snapshot
// that exists (with the UID it was last seen with) is driftd's; what was pruned or found gone, and
// what another shard renders now (handed over), is not any more. It is stored when it changed.
func (e *Engine) recordInventory(ctx context.Context, s *snapshot, deleted, gone map[diff.Key]bool) {
	inv, err := e.inventoryNow(ctx)
	if err != nil {
		// Unreadable: start a new one from what is known now. What only the lost one knew is never
		// pruned (the safe direction); the error was reported by the orphan search.
		inv = Owned{}
	}
	e.mu.Lock()
	// A quiet cycle changes nothing of it: no copy is made, nothing is encoded again (it is as
	// large as the fleet).
	mark := memoMark{s, e.memoGen}
	changed := len(deleted) > 0 || len(gone) > 0 || e.inventoryMark != mark || e.inventory == nil
	changed = changed && e.inventoryChanges(inv, s, deleted, gone)
	next := inv
	if changed {
		next = make(Owned, max(len(inv), len(s.order)))
		for k, ent := range inv {
			if !dropped(k, s, deleted, gone) {
				next[k] = ent
			}
		}
		for _, key := range s.order {
			if ent, ok := e.ownedNow(s, key); ok {
				next[key] = ent
			}
		}
	}
	e.inventory, e.inventoryMark = next, mark
	unchanged := !changed && e.inventoryStored
	e.mu.Unlock()
	if unchanged || e.deps.Inventory == nil || !e.statusWritable() {
		return
	}
	err = e.deps.Inventory.Save(ctx, next)
	if err != nil && !errors.Is(err, context.Canceled) {
		e.deps.Log.Error(err, "Cannot store driftd's inventory; objects created since the last store are not pruned once they leave Git")
	}
	e.mu.Lock()
	e.inventoryStored = err == nil
	e.mu.Unlock()
}

// inventoryChanges says whether the inventory after a cycle of s differs from inv. e.mu is held.
func (e *Engine) inventoryChanges(inv Owned, s *snapshot, deleted, gone map[diff.Key]bool) bool {
	for k := range inv {
		if dropped(k, s, deleted, gone) {
			return true
		}
	}
	for _, key := range s.order {
		if ent, ok := e.ownedNow(s, key); ok {
			if have, in := inv[key]; !in || have != ent {
				return true
			}
		}
	}
	return false
}

// dropped says whether an inventory entry leaves it: pruned, found gone, or handed over to
// another shard.
func dropped(k diff.Key, s *snapshot, deleted, gone map[diff.Key]bool) bool {
	return deleted[k] || gone[k] || (s.rendered[k] && s.desired[k] == nil)
}

// ownedNow is the inventory entry of a desired object seen live (with its UID). e.mu is held.
func (e *Engine) ownedNow(s *snapshot, key diff.Key) (OwnedObject, bool) {
	m, ok := e.memo[key]
	if !ok || m.key.uid == "" {
		return OwnedObject{}, false
	}
	return OwnedObject{Version: s.desired[key].gvk.Version, UID: m.key.uid, Cluster: s.clusters[key]}, true
}

// referrerKinds are the kinds whose spec refers to the objects a fleet's clusters are made of.
var referrerKinds = []schema.GroupKind{
	{Group: "cluster.x-k8s.io", Kind: "Cluster"},
	{Group: "cluster.x-k8s.io", Kind: "ClusterClass"},
	{Group: "cluster.x-k8s.io", Kind: "MachineDeployment"},
	{Group: "cluster.x-k8s.io", Kind: "MachineSet"},
	{Group: "cluster.x-k8s.io", Kind: "MachinePool"},
	{Group: "cluster.x-k8s.io", Kind: "Machine"},
	{Group: "controlplane.cluster.x-k8s.io", Kind: "KubeadmControlPlane"},
}

// markInUse finds, for each orphan that is not a Cluster, a live object whose spec still refers to
// it: a template an older MachineSet of a rollout still uses, the infrastructure cluster a live
// Cluster names. Deleting one of those while it is used breaks the rollout or the cluster, so it
// waits until nothing uses it. Referrers are read only in the orphans' namespaces, and only when
// there are orphans that might be deleted, from the API (no cache of every MachineSet and
// Machine is kept for this); a namespace whose referrers cannot be read holds all its orphans.
func (e *Engine) markInUse(ctx context.Context, orphans []diff.Orphan) {
	if len(orphans) == 0 || !e.opts.Policy.Prune || e.opts.Policy.Mode != diff.ModeCorrect {
		return
	}
	namespaces := map[string]bool{}
	for _, o := range orphans {
		namespaces[o.Object.GetNamespace()] = true
	}
	kinds := map[schema.GroupKind]bool{}
	for _, gk := range referrerKinds {
		kinds[gk] = true
	}
	e.mu.Lock()
	for gvk := range e.gvks {
		if gvk.Group == "controlplane.cluster.x-k8s.io" && !strings.HasSuffix(gvk.Kind, "Template") {
			kinds[gvk.GroupKind()] = true
		}
	}
	e.mu.Unlock()
	users := map[diff.Key]string{}
	unreadable := map[string]string{}
	for _, gk := range slices.SortedFunc(maps.Keys(kinds), func(a, b schema.GroupKind) int { return strings.Compare(a.String(), b.String()) }) {
		mapping, err := e.deps.Mapper.RESTMapping(gk)
		if err != nil {
			continue // not installed: nothing of that kind uses anything
		}
		for ns := range namespaces {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(mapping.GroupVersionKind.GroupVersion().WithKind(gk.Kind + "List"))
			if err := e.deps.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
				if !meta.IsNoMatchError(err) {
					unreadable[ns] = fmt.Sprintf("what could not be listed (%s: %v)", gk.Kind, err)
				}
				continue
			}
			for i := range list.Items {
				user := &list.Items[i]
				for _, ref := range diff.SpecReferences(user) {
					if _, seen := users[ref]; !seen {
						users[ref] = fmt.Sprintf("%s %s/%s", user.GetKind(), user.GetNamespace(), user.GetName())
					}
				}
			}
		}
	}
	for i := range orphans {
		o := orphans[i].Object
		if o.GetKind() == "Cluster" && diff.KeyOf(o).Group == "cluster.x-k8s.io" {
			continue // a Cluster is deleted as a whole; what it uses goes with it
		}
		if why, ok := unreadable[o.GetNamespace()]; ok {
			orphans[i].InUseBy = why
			continue
		}
		key := diff.KeyOf(o)
		if user, ok := users[key]; ok && user != key.Kind+" "+key.Namespace+"/"+key.Name {
			orphans[i].InUseBy = user
		}
	}
}

// clusterStates reads the live state of the clusters the orphans belong to.
func (e *Engine) clusterStates(ctx context.Context, s *snapshot, orphans []diff.Orphan) map[string]diff.ClusterState {
	out := map[string]diff.ClusterState{}
	for _, o := range orphans {
		if o.Cluster == "" {
			continue
		}
		id := o.Object.GetNamespace() + "/" + o.Cluster
		if _, done := out[id]; done {
			continue
		}
		st := diff.ClusterState{InGit: s.gitClusters[id]}
		ref := &unstructured.Unstructured{}
		ref.SetGroupVersionKind(diff.GVKCluster)
		ref.SetNamespace(o.Object.GetNamespace())
		ref.SetName(o.Cluster)
		if d, ok := s.desired[diff.KeyOf(ref)]; ok {
			st.Paused = d.paused
		}
		live, err := e.getLive(ctx, ref)
		if err != nil {
			// Unknown: assume the cluster exists and is paused, so nothing of it is deleted.
			st.Live, st.Paused = true, true
		} else if live != nil {
			st.Live = true
			st.Paused = st.Paused || diff.IsPaused(live)
			st.Deleting = live.GetDeletionTimestamp() != nil
		}
		out[id] = st
	}
	return out
}
