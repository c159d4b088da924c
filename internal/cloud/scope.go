package cloud

import (
	"context"
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/report"
)

// target is a rendered cluster in scope: its live Cluster, the provider that reads it and how.
type target struct {
	cluster  *unstructured.Unstructured
	provider string
	infra    infra.Cluster
}

// scope is everything one cycle judges, read once: what the plan is made from and acted on.
type scope struct {
	targets map[string]target // by cluster key
	inScope map[string]bool
	paused  map[string]bool

	machines      []*unstructured.Unstructured
	cloudMachines []diff.CloudMachine
	mhcs          []*unstructured.Unstructured
	pools         []diff.CloudPool
	groups        map[diff.Group]diff.Replicas

	snapshots map[string]*infra.Snapshot // by provider
	looks     map[string][]diff.Look     // by provider
}

// scope makes every request of the cycle: the clusters in scope with their identities, then their
// Machines (before the cloud: a Machine that gets its providerID while a slow snapshot is read is
// not among those judged), then one snapshot per provider. Trouble is reported and recorded in
// res; a cluster or provider that cannot be read is unavailable, never empty.
func (r *Reconciler) scope(ctx context.Context, rendered *Rendered, res *report.Result) *scope {
	sc := &scope{targets: map[string]target{}, inScope: map[string]bool{}, paused: map[string]bool{},
		groups: map[diff.Group]diff.Replicas{}, snapshots: map[string]*infra.Snapshot{}, looks: map[string][]diff.Look{}}
	unusable := map[string]error{}
	var order []string
	for _, desired := range rendered.Clusters {
		t, err, ok := r.target(ctx, rendered, desired)
		if !ok {
			continue
		}
		key := t.infra.Key()
		if err != nil {
			unusable[key] = err
		}
		sc.targets[key] = t
		sc.inScope[key] = true
		order = append(order, key)
		if diff.IsPaused(t.cluster) {
			sc.paused[key] = true
		}
	}
	namespaces := map[string]bool{}
	for _, t := range sc.targets {
		namespaces[t.cluster.GetNamespace()] = true
	}
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		machines, err := r.deps.Fleet.List(ctx, diff.GVKMachine, ns, nil)
		if err != nil {
			res.Errors = append(res.Errors, err)
			continue
		}
		for _, m := range machines {
			if !sc.inScope[clusterKeyOf(m)] {
				continue
			}
			sc.machines = append(sc.machines, m)
			sc.cloudMachines = append(sc.cloudMachines, diff.CloudMachine{Machine: m, Infra: r.referenced(ctx, m, "spec", "infrastructureRef")})
			g := diff.GroupOf(m)
			if _, done := sc.groups[g]; !done {
				if rep, ok := r.replicasOf(ctx, g); ok {
					sc.groups[g] = rep
				}
			}
		}
		mhcs, err := r.deps.Fleet.List(ctx, diff.GVKMachineHealthCheck, ns, nil)
		if err != nil {
			res.Errors = append(res.Errors, err)
		}
		sc.mhcs = append(sc.mhcs, mhcs...)
		pools, err := r.deps.Fleet.List(ctx, diff.GVKMachinePool, ns, nil)
		if err != nil {
			res.Errors = append(res.Errors, err)
		}
		for _, p := range pools {
			if sc.inScope[clusterKeyOf(p)] {
				sc.pools = append(sc.pools, diff.CloudPool{MachinePool: p, Infra: r.referenced(ctx, p, "spec", "template", "spec", "infrastructureRef")})
			}
		}
	}
	// A cluster whose identity driftd may not use is read with no other: its inventory is
	// unavailable, never empty.
	for _, key := range slices.Sorted(maps.Keys(unusable)) {
		err := unavailable(sc.targets[key].provider, key, unusable[key])
		res.Errors = append(res.Errors, err)
		r.warn(report.ReasonInventoryUnavailable, err)
	}
	metrics := r.deps.Ledger.Metrics()
	for _, inv := range r.opts.Inventories {
		var targets []infra.Cluster
		var looks []diff.Look
		for _, key := range order {
			t := sc.targets[key]
			if _, bad := unusable[key]; t.provider == inv.Provider() && !bad {
				targets = append(targets, t.infra)
				looks = append(looks, diff.Look{Provider: inv.Provider(), Cluster: key, Locations: locations(t)})
			}
		}
		if len(targets) == 0 {
			continue
		}
		snap, err := inv.Snapshot(ctx, targets)
		if snap != nil {
			for op, n := range snap.Calls {
				metrics.CloudCalls.WithLabelValues(inv.Provider(), op).Add(float64(n))
			}
		}
		if err != nil || snap == nil {
			metrics.CloudErrors.WithLabelValues(inv.Provider()).Inc()
			err = unavailable(inv.Provider(), "", err)
			res.Errors = append(res.Errors, err)
			r.warn(report.ReasonInventoryUnavailable, err)
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(snap.Unavailable)) {
			metrics.CloudErrors.WithLabelValues(inv.Provider()).Inc()
			err := unavailable(inv.Provider(), key, snap.Unavailable[key])
			res.Errors = append(res.Errors, err)
			r.warn(report.ReasonInventoryUnavailable, err)
		}
		for key, why := range unusable {
			if sc.targets[key].provider == inv.Provider() {
				snap.Unavailable[key] = why // so that none of its machines is judged
			}
		}
		sc.snapshots[inv.Provider()] = snap
		sc.looks[inv.Provider()] = looks
	}
	return sc
}

// locations are where a target's instances live: its region, or its vCenters.
func locations(t target) []string {
	if t.provider != infra.ProviderVSphere {
		return []string{t.infra.Region}
	}
	var out []string
	for _, vc := range t.infra.VCenters {
		out = append(out, vc.Server)
	}
	if len(out) == 0 {
		out = []string{t.infra.Server}
	}
	return out
}

// target finds a rendered Cluster's live Cluster and infrastructure cluster, the provider that
// reads it and the identity to read it with. ok is false when the cluster is not for a configured
// cloud (or not created yet); err says why its identity cannot be used.
func (r *Reconciler) target(ctx context.Context, rendered *Rendered, desired *metav1.PartialObjectMetadata) (target, error, bool) {
	ref := &unstructured.Unstructured{}
	ref.SetGroupVersionKind(desired.GroupVersionKind())
	ref.SetNamespace(desired.Namespace)
	ref.SetName(desired.Name)
	live, err := r.deps.Fleet.Live(ctx, ref)
	if err != nil || live == nil {
		return target{}, nil, false // not created yet: nothing in the cloud to compare
	}
	infraCluster := r.referenced(ctx, live, "spec", "infrastructureRef")
	if infraCluster == nil {
		return target{}, nil, false
	}
	t := target{cluster: live, infra: infra.Cluster{Name: live.GetName(), Namespace: live.GetNamespace()}}
	var idErr error
	switch infraCluster.GetKind() {
	case "AWSCluster":
		t.provider = infra.ProviderAWS
		if !r.reads(t.provider) {
			return target{}, nil, false // no identity is resolved (no Secret read) for a cloud driftd does not read
		}
		t.infra.Region, _, _ = unstructured.NestedString(infraCluster.Object, "spec", "region")
		t.infra.AWS, idErr = r.awsIdentity(ctx, infraCluster)
	case "VSphereCluster":
		t.provider = infra.ProviderVSphere
		if !r.reads(t.provider) {
			return target{}, nil, false
		}
		gitCluster, ok := rendered.Objects.Get(diff.KeyOf(ref))
		if !ok {
			return target{}, nil, false // Clusters and Objects are one render's: not reached
		}
		idErr = r.vsphereTarget(ctx, rendered, gitCluster, infraCluster, &t.infra)
	default:
		provider, ok := r.opts.InfrastructureKinds[infraCluster.GetKind()]
		if !ok || !r.reads(provider) {
			return target{}, nil, false
		}
		t.provider = provider
		t.infra.InfrastructureGroup = infraCluster.GroupVersionKind().Group
		t.infra.InfrastructureKind, t.infra.InfrastructureName = infraCluster.GetKind(), infraCluster.GetName()
	}
	return t, idErr, true
}

// reads reports whether an inventory of provider is configured.
func (r *Reconciler) reads(provider string) bool {
	for _, inv := range r.opts.Inventories {
		if inv.Provider() == provider {
			return true
		}
	}
	return false
}

// replicasOf reads the desired and available replicas of a Machine's group from its status.
func (r *Reconciler) replicasOf(ctx context.Context, g diff.Group) (diff.Replicas, bool) {
	var gvk schema.GroupVersionKind
	switch g.Kind {
	case "MachineDeployment":
		gvk = diff.GVKMachineDeployment
	case "MachineSet":
		gvk = diff.GVKMachineSet
	case "KubeadmControlPlane":
		gvk = diff.GVKKubeadmControlPlane
	default:
		return diff.Replicas{}, false
	}
	ref := &unstructured.Unstructured{}
	ref.SetGroupVersionKind(gvk)
	ref.SetNamespace(g.Namespace)
	ref.SetName(g.Name)
	live, err := r.deps.Fleet.Live(ctx, ref)
	if err != nil || live == nil {
		return diff.Replicas{}, false
	}
	desired, ok, _ := unstructured.NestedInt64(live.Object, "spec", "replicas")
	if !ok {
		return diff.Replicas{}, false
	}
	available, ok, _ := unstructured.NestedInt64(live.Object, "status", "availableReplicas")
	if !ok {
		return diff.Replicas{}, false // no status yet: the Machines in flight are what counts
	}
	return diff.Replicas{Desired: desired, Available: available}, true
}

// referenced reads the object a reference at path of obj names (a v1beta2 apiGroup/kind/name or a
// v1beta1 apiVersion/kind/name reference), in obj's namespace, or nil.
func (r *Reconciler) referenced(ctx context.Context, obj *unstructured.Unstructured, path ...string) *unstructured.Unstructured {
	ref, ok, _ := unstructured.NestedMap(obj.Object, path...)
	if !ok {
		return nil
	}
	kind, _ := ref["kind"].(string)
	name, _ := ref["name"].(string)
	group, _ := ref["apiGroup"].(string)
	gk := schema.GroupKind{Group: group, Kind: kind}
	if av, _ := ref["apiVersion"].(string); av != "" {
		gv, _ := schema.ParseGroupVersion(av)
		gk.Group = gv.Group
	}
	mapping, err := r.deps.Mapper.RESTMapping(gk)
	if err != nil || name == "" {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mapping.GroupVersionKind)
	u.SetNamespace(obj.GetNamespace())
	u.SetName(name)
	live, err := r.deps.Fleet.Live(ctx, u)
	if err != nil {
		return nil
	}
	return live
}

// clusterKeyOf is "namespace/spec.clusterName" of a Machine or MachinePool.
func clusterKeyOf(o *unstructured.Unstructured) string {
	name, _, _ := unstructured.NestedString(o.Object, "spec", "clusterName")
	return diff.ClusterKey(o.GetNamespace(), name)
}

// listAll lists every object of a kind (cluster-scoped or in every namespace) through the API.
func (r *Reconciler) listAll(ctx context.Context, gvk schema.GroupVersionKind) ([]unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := r.deps.Client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing %s: %w", gvk.Kind, err)
	}
	return list.Items, nil
}
