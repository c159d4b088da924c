package engine

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
)

// memo is the evaluation of one desired object against one state of its live object.
type memo struct {
	key    memoKey
	fields []diff.Field
	err    error
}

// memoKey is what an evaluation depends on. generation moves with every spec change of objects
// that have one (all Cluster API kinds); resourceVersion stands in for kinds that do not.
// Labels and annotations do not move generation, so they are hashed in.
type memoKey struct {
	desired  uint64
	uid      types.UID
	version  string
	metadata uint64
}

func memoKeyOf(d *desiredObject, live *unstructured.Unstructured) memoKey {
	k := memoKey{desired: d.hash}
	if live == nil {
		return k
	}
	k.uid = live.GetUID()
	if g := live.GetGeneration(); g > 0 {
		k.version = fmt.Sprintf("g%d", g)
	} else {
		k.version = "rv" + live.GetResourceVersion()
	}
	h := fnv.New64a()
	for _, m := range []map[string]string{live.GetLabels(), live.GetAnnotations()} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "%s=%s\x00", k, m[k])
		}
		h.Write([]byte{1})
	}
	k.metadata = h.Sum64()
	return k
}

// getLive reads the live object of obj, or nil when it does not exist. Objects read from the
// cache are shared with it and must not be changed.
func (e *Engine) getLive(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	err := e.deps.Reader.Get(ctx, client.ObjectKeyFromObject(obj), live)
	if apierrors.IsNotFound(err) && e.opts.LiveFromCache {
		// The cache may be narrower than the cluster (Secrets are cached by owner label only): ask
		// the API before calling anything missing. Only missing objects cost this request.
		return e.fromAPI(ctx, obj)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return live, nil
}

// fromAPI reads obj's live object from the API server rather than the cache, or nil.
func (e *Engine) fromAPI(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	if err := e.deps.Client.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return live, nil
}

// evaluate compares one desired object with its live object and decides the action.
func (e *Engine) evaluate(ctx context.Context, key diff.Key) (*diff.Finding, error) {
	d := e.desired[key]
	live, err := e.getLive(ctx, d.obj)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", d.file, key, err)
	}
	mk := memoKeyOf(d, live)
	m, ok := e.memo[key]
	if !ok || m.key != mk {
		m = memo{key: mk}
		ignored := e.opts.Rules.IgnoredPaths(d.obj, live)
		stored, err := apply.DryRun(ctx, e.deps.Client, e.toApply(d, live))
		switch {
		case err != nil:
			m.err = fmt.Errorf("%s: %s: %w", d.file, key, err)
		case live != nil:
			m.fields = diff.Compare(stored, live, ignored)
			if len(m.fields) > 0 && len(live.GetManagedFields()) == 0 && e.opts.LiveFromCache {
				// The cache keeps no managedFields (they would double its memory); only a drifted
				// object needs them, to say who set each value: read it once from the API.
				if fresh, err := e.fromAPI(ctx, d.obj); err == nil && fresh != nil {
					m.fields = diff.Compare(stored, fresh, ignored)
				}
			}
		}
		e.memo[key] = m
	}
	if m.err != nil {
		return nil, m.err
	}
	class := diff.ClassModified
	if live == nil {
		class = diff.ClassMissing
	} else if len(m.fields) == 0 {
		return nil, nil
	}
	cluster := e.clusters[key]
	action, reason := diff.Decide(class, d.obj, live, cluster, e.clusterPaused(ctx, cluster, key.Namespace), e.opts.Policy)
	if e.degraded != "" && action.Corrects() {
		action, reason = diff.ActionReport, "no corrections while "+e.degraded
	}
	return &diff.Finding{
		Layer: diff.LayerSpec, Class: class, Cluster: cluster, Object: diff.RefOf(d.obj), File: d.file,
		Fields: m.fields, Action: action, Reason: reason,
	}, nil
}

// toApply is the desired object with ignored fields set to their live values, as it is dry-run
// and applied.
func (e *Engine) toApply(d *desiredObject, live *unstructured.Unstructured) *unstructured.Unstructured {
	obj := d.obj.DeepCopy()
	if live != nil {
		diff.KeepLive(obj, live, e.opts.Rules.IgnoredPaths(d.obj, live))
	}
	return obj
}

// clusterPaused reports whether the cluster is paused, live (where pausing is usually done) or in Git.
func (e *Engine) clusterPaused(ctx context.Context, cluster, namespace string) bool {
	if cluster == "" {
		return false
	}
	key := diff.Key{Group: "cluster.x-k8s.io", Kind: "Cluster", Namespace: namespace, Name: cluster}
	if d, ok := e.desired[key]; ok {
		if diff.IsPaused(d.obj) {
			return true
		}
		if live, err := e.getLive(ctx, d.obj); err == nil && diff.IsPaused(live) {
			return true
		}
	}
	return false
}

// orphans finds live objects carrying this driftd's owner label that are no longer rendered.
func (e *Engine) orphans(ctx context.Context) (map[diff.Key]diff.Finding, []error) {
	out := map[diff.Key]diff.Finding{}
	var errs []error
	for _, gvk := range e.orphanKinds() {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := e.deps.Reader.List(ctx, list, client.MatchingLabels{diff.OwnerLabel: e.opts.Owner}); err != nil {
			if meta.IsNoMatchError(err) {
				continue
			}
			errs = append(errs, fmt.Errorf("listing %s for orphans: %w", gvk.Kind, err))
			continue
		}
		for i := range list.Items {
			live := &list.Items[i]
			key := diff.KeyOf(live)
			if _, rendered := e.desired[key]; rendered || live.GetDeletionTimestamp() != nil {
				continue
			}
			cluster := e.clusters[key]
			if cluster == "" {
				cluster = live.GetLabels()[diff.LabelClusterName]
			}
			action, reason := diff.Decide(diff.ClassOrphaned, nil, live, cluster, false, e.opts.Policy)
			if e.degraded != "" && action.Corrects() {
				action, reason = diff.ActionReport, "no corrections while "+e.degraded
			}
			out[key] = diff.Finding{Layer: diff.LayerSpec, Class: diff.ClassOrphaned, Cluster: cluster,
				Object: diff.RefOf(live), Action: action, Reason: reason}
		}
	}
	return out, errs
}

// fleetKinds are the kinds a fleet repository usually holds. Orphans are looked for among them
// and every kind rendered since driftd started, so an object whose whole kind left Git is found
// too, without listing every kind the API server serves.
var fleetKinds = []schema.GroupKind{
	{Group: "cluster.x-k8s.io", Kind: "Cluster"},
	{Group: "cluster.x-k8s.io", Kind: "ClusterClass"},
	{Group: "cluster.x-k8s.io", Kind: "MachineDeployment"},
	{Group: "cluster.x-k8s.io", Kind: "MachinePool"},
	{Group: "cluster.x-k8s.io", Kind: "MachineHealthCheck"},
	{Group: "controlplane.cluster.x-k8s.io", Kind: "KubeadmControlPlane"},
	{Group: "controlplane.cluster.x-k8s.io", Kind: "KubeadmControlPlaneTemplate"},
	{Group: "bootstrap.cluster.x-k8s.io", Kind: "KubeadmConfigTemplate"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "AWSCluster"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "AWSClusterTemplate"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "AWSMachineTemplate"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "AWSMachinePool"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "VSphereCluster"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "VSphereClusterTemplate"},
	{Group: "infrastructure.cluster.x-k8s.io", Kind: "VSphereMachineTemplate"},
	{Group: "", Kind: "Secret"},
	{Group: "", Kind: "ConfigMap"},
}

// orphanKinds returns the kinds to look for orphans in, each at the version it was rendered
// with or the server's preferred one.
func (e *Engine) orphanKinds() []schema.GroupVersionKind {
	seen := map[schema.GroupKind]bool{}
	out := make([]schema.GroupVersionKind, 0, len(e.gvks)+len(fleetKinds))
	for gvk := range e.gvks {
		if !seen[gvk.GroupKind()] {
			seen[gvk.GroupKind()] = true
			out = append(out, gvk)
		}
	}
	for _, gk := range fleetKinds {
		if seen[gk] {
			continue
		}
		mapping, err := e.deps.Mapper.RESTMapping(gk)
		if err != nil {
			continue // not installed
		}
		seen[gk] = true
		out = append(out, mapping.GroupVersionKind)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
