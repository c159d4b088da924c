package diff

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// AnnotationUpgradeConcurrency is Cluster API's annotation on a Cluster: how many of its
// MachineDeployments a topology version upgrade rolls at once (1 when absent).
const AnnotationUpgradeConcurrency = "topology.cluster.x-k8s.io/upgrade-concurrency"

// ClusterRollout says what next (a Cluster as it will be stored: the dry run of Git's object) does
// over live (nil when it does not exist) to the Machines of its topology, by Cluster API's topology
// rules. users are its live control plane and MachineDeployment topologies with their Machines.
// For a moved classRef, changes are the template references its new class has other than its
// old one (ClassTemplateChanges of the two classes, their specs read) and patched says the new
// class has patches. It is nil for a Cluster without a topology: Cluster API makes no Machines
// from it.
//
//   - topology.version: Cluster API upgrades the control plane first, then the MachineDeployments
//     (upgrade-concurrency at a time): every Machine rolls, once; other changes of the same
//     revision ride along (Cluster API does not touch a control plane or a MachineDeployment
//     waiting for its upgrade).
//   - classRef: a template of the new class whose spec differs from the old class's rotates the
//     Cluster's clone (its Machines roll); the same spec under another name is patched in place.
//   - replicas of the control plane or a MachineDeployment topology, a MachineDeployment topology
//     added or removed: a scale.
//   - anything else of the topology (variables, failure domains, a worker's class, …): unknown
//     (it may reach the templates through the class's patches).
func ClusterRollout(live, next *unstructured.Unstructured, users []ClassUser, changes []TemplateChange, patched bool) *Rollout {
	nt, ok, _ := unstructured.NestedMap(next.Object, "spec", "topology")
	if !ok || len(nt) == 0 {
		return nil
	}
	self := next.GetNamespace() + "/" + next.GetName()
	if live == nil {
		n := topologyReplicas(nt)
		if n == 0 {
			return &Rollout{Effect: EffectNone, Reason: "created with no Machines"}
		}
		return &Rollout{Effect: EffectScale, Machines: n, Reason: fmt.Sprintf("created: Cluster API creates %d Machines from its topology", n)}
	}
	lt, _, _ := unstructured.NestedMap(live.Object, "spec", "topology")
	var cp, workers int
	for _, u := range users {
		if u.Worker == "" {
			cp += u.Machines
		} else {
			workers += u.Machines
		}
	}
	lv, nv := fmt.Sprint(lt["version"]), fmt.Sprint(nt["version"])
	lc, nc := classRefOf(live, lt), classRefOf(next, nt)
	grew, scaledPools := topologyScale(lt, nt)
	others := !equality.Semantic.DeepEqual(topologyRest(lt), topologyRest(nt))

	switch {
	case lv != nv:
		concurrency := next.GetAnnotations()[AnnotationUpgradeConcurrency]
		if concurrency == "" {
			concurrency = "1"
		}
		r := &Rollout{Effect: EffectRoll, Machines: cp + workers, ControlPlaneMachines: cp, Clusters: []string{self},
			Reason: fmt.Sprintf("spec.topology.version %s → %s: Cluster API upgrades the control plane first (%d Machines, one at a time), "+
				"then the MachineDeployments (%d Machines, %s MachineDeployment(s) at a time, %s); the revision's other changes ride along with this one rollout",
				lv, nv, cp, workers, concurrency, AnnotationUpgradeConcurrency)}
		if r.Machines == 0 {
			r.Effect, r.Clusters = EffectNone, nil
		}
		return r
	case others:
		return &Rollout{Effect: EffectUnknown, Reason: "a change to the topology beyond its version, class and replicas " +
			"(variables, failure domains, a worker's class, …) may reach the templates through the class's patches"}
	case lc != nc:
		r := classRollout(changes, users, patched, false)
		if r == nil {
			r = &Rollout{Effect: EffectNone, Reason: "the two classes reference the same templates"}
		}
		if r.Effect == EffectRoll {
			r.Clusters = []string{self}
		} else {
			r.Clusters = nil
		}
		r.Reason = fmt.Sprintf("spec.topology.classRef %s → %s: %s", lc, nc, r.Reason)
		if r.Effect == EffectNone && scaledPools > 0 {
			return &Rollout{Effect: EffectScale, Machines: grew, Reason: r.Reason + fmt.Sprintf("; %d pools scaled", scaledPools)}
		}
		return r
	case scaledPools > 0:
		return &Rollout{Effect: EffectScale, Machines: grew, Reason: fmt.Sprintf("replicas of %d pools of the topology: Machines created or deleted, none replaced", scaledPools)}
	}
	return nil
}

// classRefOf names a Cluster's class as namespace/name (its own namespace when the ref has none).
func classRefOf(c *unstructured.Unstructured, topology map[string]any) string {
	ref, _ := topology["classRef"].(map[string]any)
	ns := fmt.Sprint(ref["namespace"])
	if ref["namespace"] == nil || ns == "" {
		ns = c.GetNamespace()
	}
	return ns + "/" + fmt.Sprint(ref["name"])
}

// topologyReplicas is how many Machines a topology asks for: its control plane's and its
// MachineDeployments' replicas.
func topologyReplicas(t map[string]any) int {
	n := replicasIn(t, "controlPlane")
	for _, md := range machineDeploymentTopologies(t) {
		n += replicasIn(md, "")
	}
	return n
}

// topologyScale is how many Machines a change of the topology's replicas creates or deletes, and
// in how many pools (the control plane, a MachineDeployment topology added, removed or resized).
func topologyScale(live, next map[string]any) (machines, pools int) {
	diff := func(a, b int) {
		if a != b {
			pools++
			machines += max(a-b, b-a)
		}
	}
	diff(replicasIn(live, "controlPlane"), replicasIn(next, "controlPlane"))
	lm, nm := machineDeploymentTopologies(live), machineDeploymentTopologies(next)
	names := map[string]bool{}
	for n := range lm {
		names[n] = true
	}
	for n := range nm {
		names[n] = true
	}
	for n := range names {
		diff(replicasIn(lm[n], ""), replicasIn(nm[n], ""))
	}
	return machines, pools
}

// topologyRest is a topology without what ClusterRollout judges on its own: version, classRef
// and replicas (and MachineDeployment topologies added or removed).
func topologyRest(t map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range t {
		switch k {
		case "version", "classRef":
		case "controlPlane":
			if cp, ok := v.(map[string]any); ok {
				out[k] = without(cp, "replicas")
			}
		case "workers":
			w, _ := v.(map[string]any)
			rest := without(w, "machineDeployments")
			mds := machineDeploymentTopologies(t)
			names := make([]string, 0, len(mds))
			for n := range mds {
				names = append(names, n)
			}
			sort.Strings(names)
			var kept []any
			for _, n := range names {
				kept = append(kept, without(mds[n], "replicas"))
			}
			rest["machineDeployments"] = kept
			out[k] = rest
		default:
			out[k] = v
		}
	}
	return out
}

// machineDeploymentTopologies are a topology's MachineDeployment topologies by name.
func machineDeploymentTopologies(t map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	w, _ := t["workers"].(map[string]any)
	items, _ := w["machineDeployments"].([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out[fmt.Sprint(m["name"])] = m
		}
	}
	return out
}

// replicasIn is the replicas of m's field (m itself when field is ""), 0 when unset.
func replicasIn(m map[string]any, field string) int {
	if field != "" {
		m, _ = m[field].(map[string]any)
	}
	switch n := m["replicas"].(type) {
	case int64:
		return int(n)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// without is a copy of m without the keys.
func without(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}
