package diff

import (
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ClusterState is what pruning needs to know of a Cluster API cluster.
type ClusterState struct {
	// Live: the Cluster exists in the management cluster.
	Live bool
	// InGit: the Cluster is rendered from Git (by any shard).
	InGit bool
	// Paused: it is paused, live or in Git.
	Paused bool
	// Deleting: it has a deletionTimestamp.
	Deleting bool
}

// PruneLimit holds back a revision's deletions when there are more than Max of them, or more than
// Percent of the objects driftd tracks (a single deletion is never held back by Percent alone).
type PruneLimit struct {
	// Max is the most deletions one revision may make; negative: no limit.
	Max int
	// Percent is the largest share of the tracked objects one revision may delete; negative: no limit.
	Percent int
}

// DefaultPruneLimit holds back more than 5 deletions, or more than 10 % of what driftd tracks.
var DefaultPruneLimit = PruneLimit{Max: 5, Percent: 10}

// Orphan is a live object carrying this driftd's tracking id that is no longer rendered.
type Orphan struct {
	Object *unstructured.Unstructured
	// Cluster is the cluster it belongs to (by its labels, owner references, references from other
	// orphans or an earlier render), or "".
	Cluster string
	// InUseBy names a live object whose spec still refers to it (a MachineSet to its machine
	// template, a Cluster to its infrastructure cluster or ClusterClass), or why that could not be
	// told; "" when nothing does. An object in use is not deleted.
	InUseBy string
}

// PruneInput is what DecidePrune looks at.
type PruneInput struct {
	Orphans []Orphan
	// Clusters are the states of the clusters the orphans belong to, by "namespace/name".
	Clusters map[string]ClusterState
	// Tracked is how many objects driftd tracks: the rendered ones and the orphans.
	Tracked int
	// Limit is the prune limit; nil is DefaultPruneLimit.
	Limit  *PruneLimit
	Policy Policy
	// Degraded says why corrections are off (source or render trouble), or "".
	Degraded string
}

// PrunePlan is the outcome of DecidePrune: a finding per orphan, and the deletions held back by the
// limit (0 when none).
type PrunePlan struct {
	Findings []Finding
	// Held is how many deletions the limit held back; HeldReason says why.
	Held       int
	HeldReason string
}

// DecidePrune decides what happens to each orphan. Pruning is opt-in and deletes only what is
// safe to delete one by one: a Cluster (with driftd.io/prune: enabled) is deleted as a whole and
// Cluster API tears its parts down, so the parts of a Cluster that left Git are never deleted by
// driftd; nothing of a paused or deleting Cluster is touched; and above the limit nothing is
// deleted at all.
func DecidePrune(in PruneInput) PrunePlan {
	var plan PrunePlan
	var candidates []int
	for _, o := range in.Orphans {
		live := o.Object
		f := Finding{Layer: LayerSpec, Class: ClassOrphaned, Cluster: o.Cluster, Object: RefOf(live)}
		f.Decided(decideOrphan(o, in))
		if f.Action == ActionDelete {
			candidates = append(candidates, len(plan.Findings))
		}
		plan.Findings = append(plan.Findings, f)
	}
	limit := DefaultPruneLimit
	if in.Limit != nil {
		limit = *in.Limit
	}
	n := len(candidates)
	share := 0.0
	if in.Tracked > 0 {
		share = 100 * float64(n) / float64(in.Tracked)
	}
	var why string
	switch {
	case limit.Max >= 0 && n > limit.Max:
		why = fmt.Sprintf("%d deletions in one revision exceed the limit of %d (--max-prune)", n, limit.Max)
	case limit.Percent >= 0 && (n > 1 || limit.Percent == 0) && share > float64(limit.Percent):
		why = fmt.Sprintf("%d deletions in one revision are %.0f%% of the %d objects driftd tracks, above the limit of %d%% (--max-prune-percent)",
			n, math.Round(share), in.Tracked, limit.Percent)
	}
	if why != "" {
		for _, i := range candidates {
			plan.Findings[i].Decided(blocked(BlockerPruneLimit, "prune limit: "+why))
		}
		plan.Held, plan.HeldReason = n, why
	}
	return plan
}

func decideOrphan(o Orphan, in PruneInput) Decision {
	live := o.Object
	if annotation(nil, live, AnnotationReconcile) == "disabled" {
		return Decision{Action: ActionIgnored, Reason: AnnotationReconcile + ": disabled"}
	}
	isCluster := live.GetKind() == "Cluster" && groupOf(live) == "cluster.x-k8s.io"
	state := in.Clusters[live.GetNamespace()+"/"+o.Cluster]
	if isCluster {
		state = in.Clusters[live.GetNamespace()+"/"+live.GetName()]
		state.Live, state.Deleting = true, live.GetDeletionTimestamp() != nil
		state.Paused = state.Paused || IsPaused(live)
	}
	switch {
	case !in.Policy.Prune:
		return reported("no longer rendered from Git; pruning is off")
	case live.GetKind() == "Namespace" && live.GetAPIVersion() == "v1",
		live.GetKind() == "CustomResourceDefinition" && groupOf(live) == "apiextensions.k8s.io":
		return reported("no longer rendered from Git; driftd never prunes a " + live.GetKind() + ": deleting it deletes everything in it")
	case live.GetDeletionTimestamp() != nil:
		return reported("no longer rendered from Git; already being deleted")
	case o.Cluster != "" && state.Deleting:
		return reported(fmt.Sprintf("no longer rendered from Git; cluster %s is being deleted, and nothing of it is touched", o.Cluster))
	case o.Cluster != "" && state.Paused:
		return blocked(BlockerClusterPaused, fmt.Sprintf("no longer rendered from Git; cluster %s is paused, and nothing of it is pruned", o.Cluster))
	case isCluster && live.GetAnnotations()[AnnotationPrune] != "enabled":
		return reported("no longer rendered from Git; a Cluster is pruned only with " + AnnotationPrune + ": enabled")
	case !isCluster && o.Cluster != "" && !state.InGit && state.Live:
		return reported(fmt.Sprintf("no longer rendered from Git, like its Cluster %s: deleting the Cluster deletes its parts (Cluster API tears it down); driftd never deletes a Cluster's parts one by one", o.Cluster))
	case !isCluster && o.Cluster != "" && !state.InGit:
		return reported(fmt.Sprintf("no longer rendered from Git; its Cluster %s left Git and is gone, and what Cluster API left of it is not pruned by driftd", o.Cluster))
	case o.InUseBy != "":
		return reported(fmt.Sprintf("no longer rendered from Git; still in use by %s, so it is pruned once nothing uses it", o.InUseBy))
	case in.Policy.Mode == ModeDetect:
		return reported("detect mode")
	case annotation(nil, live, AnnotationMode) == string(ModeDetect):
		return reported(AnnotationMode + ": detect")
	case in.Degraded != "":
		return reported("no corrections while " + in.Degraded)
	}
	return corrected(ActionDelete, "")
}

// SpecReferences returns the objects o's spec refers to by kind and name, in o's namespace: every
// reference Cluster API objects carry (infrastructureRef, configRef, templateRef, at any depth, as
// apiGroup or apiVersion) and a Cluster's ClusterClass (spec.topology.classRef, or class).
func SpecReferences(o *unstructured.Unstructured) []Key {
	spec, ok := o.Object["spec"].(map[string]any)
	if !ok {
		return nil
	}
	var keys []Key
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			kind, _ := t["kind"].(string)
			name, _ := t["name"].(string)
			if kind != "" && name != "" {
				group, _ := t["apiGroup"].(string)
				if av, _ := t["apiVersion"].(string); group == "" && av != "" {
					gv, _ := schema.ParseGroupVersion(av)
					group = gv.Group
				}
				ns, _ := t["namespace"].(string)
				if ns == "" {
					ns = o.GetNamespace()
				}
				keys = append(keys, Key{Group: group, Kind: kind, Namespace: ns, Name: name})
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(spec)
	if o.GetKind() == "Cluster" && groupOf(o) == "cluster.x-k8s.io" {
		class, _, _ := unstructured.NestedString(o.Object, "spec", "topology", "classRef", "name")
		classNS, _, _ := unstructured.NestedString(o.Object, "spec", "topology", "classRef", "namespace")
		if class == "" { // v1beta1
			class, _, _ = unstructured.NestedString(o.Object, "spec", "topology", "class")
			classNS, _, _ = unstructured.NestedString(o.Object, "spec", "topology", "classNamespace")
		}
		if classNS == "" {
			classNS = o.GetNamespace()
		}
		if class != "" {
			keys = append(keys, Key{Group: "cluster.x-k8s.io", Kind: "ClusterClass", Namespace: classNS, Name: class})
		}
	}
	return keys
}
