package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/report"
)

// CloudOptions configure the cloud layer. The zero value compares nothing with the cloud.
type CloudOptions struct {
	// Inventories are the providers to read (infra/aws, infra/vsphere, infra/endpoint).
	Inventories []Inventory
	// InfrastructureKinds map the kind of a Cluster's infrastructure cluster to the inventory
	// endpoint provider that answers for it (DevCluster → in-memory); AWSCluster and VSphereCluster
	// need no entry.
	InfrastructureKinds map[string]string
	// MachineFields say, by inventory endpoint provider, which infrastructure machine fields an
	// instance's type and image are compared with.
	MachineFields map[string]diff.MachineFields
	// Writes lets driftd restore an Auto Scaling group's sizes (UpdateAutoScalingGroup).
	Writes bool
	// Budget is how many Machine replacements may be in flight per MachineDeployment, MachineSet
	// or control plane; 1 when zero.
	Budget int
	// TotalBudget caps the replacements in flight across the fleet; 0 means no cap.
	TotalBudget int
	// Breaker stops replacements in a cluster or pool where too many Machines look missing or
	// stopped at once; nil is diff.DefaultBreaker.
	Breaker *diff.Breaker
	// AWSIdentityNamespace is where the Secrets of AWSClusterStaticIdentities live (CAPA's namespace).
	AWSIdentityNamespace string
	// Grace is how old an instance no Machine references must be before it is reported; 10
	// minutes when zero.
	Grace time.Duration
	// IdentityNamespace is where the Secrets of VSphereClusterIdentities live (CAPV's namespace).
	IdentityNamespace string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Inventory is what the engine needs of a cloud provider: the instances and node pools of the
// clusters in scope, and whether the answer is complete. infra/aws and infra/vsphere satisfy it.
type Inventory interface {
	// Provider is infra.ProviderAWS, infra.ProviderVSphere or an inventory endpoint's name (the
	// scheme of its providerIDs).
	Provider() string
	// Snapshot reads the inventory of clusters. An error or an incomplete snapshot means nothing
	// may be concluded from what is absent.
	Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error)
}

// PoolRestorer is an inventory that can restore a node pool's sizes, with the cluster's identity.
type PoolRestorer interface {
	RestorePool(ctx context.Context, cluster infra.Cluster, name string, desired *int32, minSize, maxSize int32) error
}

var (
	gvkMachine     = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Machine"}
	gvkMHC         = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineHealthCheck"}
	gvkMachinePool = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachinePool"}
	gvkClusterLive = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Cluster"}
)

// CloudCycle compares the Machines and MachinePools of the rendered clusters with the cloud and
// replaces drifted Machines as the policy allows. A provider that cannot answer completely is
// reported (InventoryUnavailable) and none of its machines is judged or touched.
func (e *Engine) CloudCycle(ctx context.Context) (*Result, error) {
	e.cloudMu.Lock()
	defer e.cloudMu.Unlock()
	s := e.snap.Load()
	if s == nil {
		return nil, ErrNoRevision
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.CycleTimeout)
	defer cancel()
	res := &Result{Revision: s.revision}
	e.evaluateCloud(ctx, s, res)
	e.correctCloud(ctx, res)
	e.mu.Lock()
	e.cloudRemaining = res.Remaining()
	e.mu.Unlock()
	e.publishDrift()
	return res, nil
}

// PlanCloud is CloudCycle without corrections.
func (e *Engine) PlanCloud(ctx context.Context) (*Result, error) {
	e.cloudMu.Lock()
	defer e.cloudMu.Unlock()
	s := e.snap.Load()
	if s == nil {
		return nil, ErrNoRevision
	}
	res := &Result{Revision: s.revision}
	e.evaluateCloud(ctx, s, res)
	return res, nil
}

// scopeCluster is a rendered cluster with its live infrastructure cluster.
type scopeCluster struct {
	cluster  *unstructured.Unstructured
	provider string
	target   infra.Cluster
}

var (
	gvkMachineSet = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineSet"}
	gvkKCP        = schema.GroupVersionKind{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlane"}
)

func (e *Engine) evaluateCloud(ctx context.Context, s *snapshot, res *Result) {
	now := time.Now
	if e.opts.Cloud.Now != nil {
		now = e.opts.Cloud.Now
	}
	grace := e.opts.Cloud.Grace
	if grace == 0 {
		grace = 10 * time.Minute
	}
	scope, unusable, errs := e.cloudScope(ctx, s)
	res.Errors = append(res.Errors, errs...)

	in := diff.CloudInput{Snapshots: map[string]*infra.Snapshot{}, Clusters: map[string]bool{}, Now: now(), Grace: grace,
		MachineFields: e.opts.Cloud.MachineFields}
	rin := diff.ReplaceInput{Paused: map[string]bool{}, Budget: e.opts.Cloud.Budget, TotalBudget: e.opts.Cloud.TotalBudget,
		Breaker: e.opts.Cloud.Breaker, Policy: e.opts.Policy, Groups: map[diff.Group]diff.Replicas{}, Suspect: map[string]string{}}
	namespaces := map[string]bool{}
	for _, sc := range scope {
		in.Clusters[sc.target.Key()] = true
		namespaces[sc.cluster.GetNamespace()] = true
		if diff.IsPaused(sc.cluster) {
			rin.Paused[sc.target.Key()] = true
		}
	}
	// The Machines first, the cloud after: a Machine that gets its providerID while a slow snapshot
	// is read is not among those judged, so it cannot look missing.
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		machines, err := e.list(ctx, gvkMachine, ns)
		if err != nil {
			res.Errors = append(res.Errors, err)
			continue
		}
		for _, m := range machines {
			if !in.Clusters[clusterKeyOf(m)] {
				continue
			}
			rin.Machines = append(rin.Machines, m)
			in.Machines = append(in.Machines, diff.CloudMachine{Machine: m, Infra: e.referenced(ctx, m, "spec", "infrastructureRef")})
			g := diff.GroupOf(m)
			if _, done := rin.Groups[g]; !done {
				if r, ok := e.replicasOf(ctx, g); ok {
					rin.Groups[g] = r
				}
			}
		}
		mhcs, err := e.list(ctx, gvkMHC, ns)
		res.Errors = append(res.Errors, errOrNil(err)...)
		rin.MHCs = append(rin.MHCs, mhcs...)
		pools, err := e.list(ctx, gvkMachinePool, ns)
		res.Errors = append(res.Errors, errOrNil(err)...)
		for _, p := range pools {
			if in.Clusters[clusterKeyOf(p)] {
				in.Pools = append(in.Pools, diff.CloudPool{MachinePool: p, Infra: e.referenced(ctx, p, "spec", "template", "spec", "infrastructureRef")})
			}
		}
	}
	// A cluster whose identity driftd may not use is read with no other: its inventory is
	// unavailable, never empty.
	for _, key := range slices.Sorted(maps.Keys(unusable)) {
		err := fmt.Errorf("%s inventory of cluster %s unavailable; none of its machines is judged this cycle: %w", e.providerOf(scope, key), key, unusable[key])
		res.Errors = append(res.Errors, err)
		e.warn(report.ReasonInventoryUnavailable, err)
	}
	for _, inv := range e.opts.Cloud.Inventories {
		var targets []infra.Cluster
		for _, sc := range scope {
			if _, bad := unusable[sc.target.Key()]; sc.provider == inv.Provider() && !bad {
				targets = append(targets, sc.target)
			}
		}
		if len(targets) == 0 {
			continue
		}
		snap, err := inv.Snapshot(ctx, targets)
		if snap != nil {
			for op, n := range snap.Calls {
				e.deps.Metrics.CloudCalls.WithLabelValues(inv.Provider(), op).Add(float64(n))
			}
		}
		if err != nil || snap == nil {
			e.deps.Metrics.CloudErrors.WithLabelValues(inv.Provider()).Inc()
			err = fmt.Errorf("%s inventory unavailable; none of its machines is judged this cycle: %w", inv.Provider(), err)
			res.Errors = append(res.Errors, err)
			e.warn(report.ReasonInventoryUnavailable, err)
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(snap.Unavailable)) {
			e.deps.Metrics.CloudErrors.WithLabelValues(inv.Provider()).Inc()
			err := fmt.Errorf("%s inventory of cluster %s unavailable; none of its machines is judged this cycle: %w", inv.Provider(), key, snap.Unavailable[key])
			res.Errors = append(res.Errors, err)
			e.warn(report.ReasonInventoryUnavailable, err)
		}
		for key, why := range unusable {
			if e.providerOf(scope, key) == inv.Provider() {
				snap.Unavailable[key] = why // so that none of its machines is judged
			}
		}
		in.Snapshots[inv.Provider()] = snap
		for k, why := range e.vanished(inv.Provider(), targets, snap, rin.Machines) {
			rin.Suspect[k] = why
		}
	}
	plan := diff.PlanReplacements(diff.CloudFindings(in), rin)
	byMachine := map[diff.Key]diff.Replacement{}
	for _, r := range plan.Replacements {
		byMachine[diff.KeyOf(r.Machine)] = r
	}
	e.mu.Lock()
	e.replacements = byMachine
	e.suspect = plan.Suspect
	e.mu.Unlock()
	findings := plan.Findings
	for i := range findings {
		f := &findings[i]
		if f.Class == diff.ClassNodePoolMismatch {
			f.Action, f.Reason = e.decidePool(f, rin)
		}
		if s.degraded != "" && f.Action.Corrects() {
			f.Action, f.Reason = diff.ActionReport, "no corrections while "+s.degraded
		}
	}
	res.Findings = findings
	byKey := map[string]infra.Cluster{}
	for _, sc := range scope {
		byKey[sc.target.Key()] = sc.target
	}
	e.mu.Lock()
	e.cloudScopeByKey = byKey
	e.mu.Unlock()
}

// replicasOf reads the desired and available replicas of a Machine's group from its status.
func (e *Engine) replicasOf(ctx context.Context, g diff.Group) (diff.Replicas, bool) {
	var gvk schema.GroupVersionKind
	switch g.Kind {
	case "MachineDeployment":
		gvk = gvkMachineDeployment
	case "MachineSet":
		gvk = gvkMachineSet
	case "KubeadmControlPlane":
		gvk = gvkKCP
	default:
		return diff.Replicas{}, false
	}
	ref := &unstructured.Unstructured{}
	ref.SetGroupVersionKind(gvk)
	ref.SetNamespace(g.Namespace)
	ref.SetName(g.Name)
	live, err := e.getLive(ctx, ref)
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

// vanished finds the clusters whose instances a location (an AWS account and region, a vCenter)
// held at the last look and that now answers with none of them while their Machines remain: a
// whole location does not empty itself between two looks, a wrong answer does. It remembers what
// it saw for the next look.
func (e *Engine) vanished(provider string, targets []infra.Cluster, snap *infra.Snapshot, machines []*unstructured.Unstructured) map[string]string {
	seen := map[string]int{}
	for _, inst := range snap.Instances {
		if inst.Cluster != "" && inst.State != infra.StateTerminated {
			seen[inst.Cluster+"@"+inst.Region]++
		}
	}
	withMachines := map[string]int{}
	for _, m := range machines {
		if pid, _, _ := unstructured.NestedString(m.Object, "spec", "providerID"); pid != "" {
			withMachines[clusterKeyOf(m)]++
		}
	}
	out := map[string]string{}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range targets {
		if _, unavailable := snap.Unavailable[t.Key()]; unavailable {
			continue
		}
		locations := []string{t.Region}
		if provider == infra.ProviderVSphere {
			locations = nil
			for _, vc := range t.VCenters {
				locations = append(locations, vc.Server)
			}
			if len(locations) == 0 {
				locations = []string{t.Server}
			}
		}
		for _, loc := range locations {
			k := provider + "/" + t.Key() + "@" + loc
			before, now := e.lastSeen[k], seen[t.Key()+"@"+loc]
			if before > 0 && now == 0 && withMachines[t.Key()] > 0 {
				where := provider
				if loc != "" {
					where += " " + loc
				}
				out[t.Key()] = fmt.Sprintf("%s held %d of its instances at the last look and now answers with none while %d of its Machines remain",
					where, before, withMachines[t.Key()])
				continue // remember the last good count until the location answers again
			}
			e.lastSeen[k] = now
		}
	}
	return out
}

func (e *Engine) providerOf(scope []scopeCluster, key string) string {
	for _, sc := range scope {
		if sc.target.Key() == key {
			return sc.provider
		}
	}
	return ""
}

// clusterKeyOf is "namespace/spec.clusterName" of a Machine or MachinePool.
func clusterKeyOf(o *unstructured.Unstructured) string {
	name, _, _ := unstructured.NestedString(o.Object, "spec", "clusterName")
	return diff.ClusterKey(o.GetNamespace(), name)
}

func (e *Engine) decidePool(f *diff.Finding, rin diff.ReplaceInput) (diff.Action, string) {
	switch {
	case e.opts.Policy.Mode == diff.ModeDetect:
		return diff.ActionReport, "detect mode"
	case !e.restorable(f.Pool.Provider):
		return diff.ActionReport, fmt.Sprintf("the %s inventory cannot restore node pools", f.Pool.Provider)
	case !e.opts.Cloud.Writes:
		return diff.ActionReport, "cloud writes are off (--cloud-writes restores the group)"
	case rin.Paused[diff.ClusterKey(f.Object.Namespace, f.Cluster)]:
		return diff.ActionBlocked, fmt.Sprintf("cluster %s is paused", f.Cluster)
	}
	return diff.ActionApply, "UpdateAutoScalingGroup restores the group's sizes"
}

// reads reports whether an inventory of provider is configured.
func (e *Engine) reads(provider string) bool {
	for _, inv := range e.opts.Cloud.Inventories {
		if inv.Provider() == provider {
			return true
		}
	}
	return false
}

// restorable reports whether the provider's inventory can restore a node pool's sizes.
func (e *Engine) restorable(provider string) bool {
	for _, inv := range e.opts.Cloud.Inventories {
		if _, ok := inv.(PoolRestorer); ok && inv.Provider() == provider {
			return true
		}
	}
	return false
}

// cloudScope finds the rendered Clusters, their live AWSCluster, VSphereCluster or infrastructure
// cluster of an inventory endpoint, and the identity to read each with. A cluster whose identity driftd may not use is returned among unusable, with
// why: its inventory is unavailable, never empty.
func (e *Engine) cloudScope(ctx context.Context, s *snapshot) ([]scopeCluster, map[string]error, []error) {
	var out []scopeCluster
	unusable := map[string]error{}
	var errs []error
	for _, key := range s.order {
		if key.Kind != "Cluster" || key.Group != "cluster.x-k8s.io" {
			continue
		}
		live, err := e.getLive(ctx, s.desired[key].obj)
		if err != nil || live == nil {
			continue // not created yet: nothing in the cloud to compare
		}
		infraCluster := e.referenced(ctx, live, "spec", "infrastructureRef")
		if infraCluster == nil {
			continue
		}
		sc := scopeCluster{cluster: live, target: infra.Cluster{Name: live.GetName(), Namespace: live.GetNamespace()}}
		var idErr error
		switch infraCluster.GetKind() {
		case "AWSCluster":
			sc.provider = infra.ProviderAWS
			if !e.reads(sc.provider) {
				continue // no identity is resolved (no Secret read) for a cloud driftd does not read
			}
			sc.target.Region, _, _ = unstructured.NestedString(infraCluster.Object, "spec", "region")
			sc.target.AWS, idErr = e.awsIdentity(ctx, infraCluster)
		case "VSphereCluster":
			sc.provider = infra.ProviderVSphere
			if !e.reads(sc.provider) {
				continue
			}
			idErr = e.vsphereTarget(ctx, s, s.desired[key].obj, infraCluster, &sc.target)
		default:
			provider, ok := e.opts.Cloud.InfrastructureKinds[infraCluster.GetKind()]
			if !ok {
				continue
			}
			sc.provider = provider
			sc.target.InfrastructureGroup = infraCluster.GroupVersionKind().Group
			sc.target.InfrastructureKind, sc.target.InfrastructureName = infraCluster.GetKind(), infraCluster.GetName()
		}
		if idErr != nil {
			unusable[sc.target.Key()] = idErr
		}
		out = append(out, sc)
	}
	return out, unusable, errs
}

// vsphereTarget reads what driftd needs to read a VSphereCluster's VMs: the vCenters — the server
// and thumbprint Git gives, never ones a live edit put there (driftd would hand privileged
// credentials to whatever host a tenant names), plus the servers of the cluster's machines that Git
// or a VSphereDeploymentZone names — its identity, and the folders of its machines.
func (e *Engine) vsphereTarget(ctx context.Context, s *snapshot, cluster, vc *unstructured.Unstructured, t *infra.Cluster) error {
	t.Server, _, _ = unstructured.NestedString(vc.Object, "spec", "server")
	t.Thumbprint, _, _ = unstructured.NestedString(vc.Object, "spec", "thumbprint")
	if err := pinnedByGit(s, cluster, vc, t.Server, t.Thumbprint); err != nil {
		return err
	}
	if err := infra.SecureVCenter(t.Server); err != nil {
		return fmt.Errorf("VSphereCluster %s: %w", diff.KeyOf(vc), err)
	}
	allowed := map[string]string{} // server → thumbprint that Git or the platform names
	allowed[t.Server] = t.Thumbprint
	for _, d := range s.desired {
		if d.obj.GetKind() == "VSphereMachineTemplate" && d.obj.GetNamespace() == vc.GetNamespace() {
			if srv, _, _ := unstructured.NestedString(d.obj.Object, "spec", "template", "spec", "server"); srv != "" {
				if _, ok := allowed[srv]; !ok {
					allowed[srv], _, _ = unstructured.NestedString(d.obj.Object, "spec", "template", "spec", "thumbprint")
				}
			}
		}
	}
	if zones, err := e.listAll(ctx, schema.GroupVersionKind{Group: capvGroup, Version: "v1beta1", Kind: "VSphereDeploymentZone"}); err == nil {
		for _, z := range zones {
			if srv, _, _ := unstructured.NestedString(z.Object, "spec", "server"); srv != "" {
				if _, ok := allowed[srv]; !ok {
					allowed[srv] = ""
				}
			}
		}
	}
	id, err := e.vsphereIdentity(ctx, vc)
	if err != nil {
		return err
	}
	t.VSphere = id
	t.VCenters = []infra.VCenter{{Server: t.Server, Thumbprint: t.Thumbprint}}
	// The folders and servers of the cluster's VSphereMachines.
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: capvGroup, Version: "v1beta1", Kind: "VSphereMachineList"})
	if err := e.listReady(ctx, list, client.InNamespace(vc.GetNamespace()), client.MatchingLabels{diff.LabelClusterName: t.Name}); err != nil {
		return fmt.Errorf("listing its VSphereMachines: %w", err)
	}
	seenFolder, seenServer := map[string]bool{}, map[string]bool{t.Server: true}
	for _, m := range list.Items {
		if f, _, _ := unstructured.NestedString(m.Object, "spec", "folder"); f != "" && !seenFolder[f] {
			seenFolder[f] = true
			t.Folders = append(t.Folders, f)
		}
		srv, _, _ := unstructured.NestedString(m.Object, "spec", "server")
		if srv == "" || seenServer[srv] {
			continue
		}
		thumb, ok := allowed[srv]
		if !ok {
			return fmt.Errorf("VSphereMachine %s/%s names server %q, which neither Git nor a VSphereDeploymentZone names; driftd does not log in there", m.GetNamespace(), m.GetName(), srv)
		}
		if err := infra.SecureVCenter(srv); err != nil {
			return fmt.Errorf("VSphereMachine %s/%s: %w", m.GetNamespace(), m.GetName(), err)
		}
		seenServer[srv] = true
		t.VCenters = append(t.VCenters, infra.VCenter{Server: srv, Thumbprint: thumb})
	}
	sort.Strings(t.Folders)
	return nil
}

// pinnedByGit checks that the server and thumbprint a live VSphereCluster names are ones Git gives
// it: driftd hands the identity's credentials to that server, so a live edit must not choose it.
// A VSphereCluster rendered from Git must name exactly Git's; one Cluster API generated from a
// ClusterClass must name the server of the class' VSphereClusterTemplate, or one the Cluster's
// topology variables (or the class' variable defaults) give, as a topology patch would set it. Any
// other VSphereCluster is refused: nothing in Git says where its vCenter is.
func pinnedByGit(s *snapshot, cluster, vc *unstructured.Unstructured, server, thumbprint string) error {
	if d, ok := s.desired[diff.KeyOf(vc)]; ok {
		gitServer, _, _ := unstructured.NestedString(d.obj.Object, "spec", "server")
		gitThumb, _, _ := unstructured.NestedString(d.obj.Object, "spec", "thumbprint")
		if gitServer != server || gitThumb != thumbprint {
			return fmt.Errorf("VSphereCluster %s names server %q (thumbprint %q) live but %q (%q) in Git; driftd logs in only where Git says", diff.KeyOf(vc), server, thumbprint, gitServer, gitThumb)
		}
		return nil
	}
	className, _, _ := unstructured.NestedString(cluster.Object, "spec", "topology", "classRef", "name")
	if className == "" {
		return fmt.Errorf("VSphereCluster %s is not in Git and not generated from a ClusterClass in Git; driftd logs in only at a server Git names", diff.KeyOf(vc))
	}
	classNS, _, _ := unstructured.NestedString(cluster.Object, "spec", "topology", "classRef", "namespace")
	if classNS == "" {
		classNS = cluster.GetNamespace()
	}
	class, ok := s.desired[diff.Key{Group: "cluster.x-k8s.io", Kind: "ClusterClass", Namespace: classNS, Name: className}]
	if !ok {
		return fmt.Errorf("VSphereCluster %s comes from ClusterClass %s/%s, which is not in Git; driftd logs in only at a server Git names", diff.KeyOf(vc), classNS, className)
	}
	servers, thumbprints := map[string]bool{}, map[string]bool{"": true}
	tplKind, _, _ := unstructured.NestedString(class.obj.Object, "spec", "infrastructure", "templateRef", "kind")
	tplName, _, _ := unstructured.NestedString(class.obj.Object, "spec", "infrastructure", "templateRef", "name")
	if tpl, ok := s.desired[diff.Key{Group: capvGroup, Kind: tplKind, Namespace: classNS, Name: tplName}]; ok {
		srv, _, _ := unstructured.NestedString(tpl.obj.Object, "spec", "template", "spec", "server")
		thumb, _, _ := unstructured.NestedString(tpl.obj.Object, "spec", "template", "spec", "thumbprint")
		servers[srv], thumbprints[thumb] = true, true
	}
	// Values a topology patch may have put there: the Cluster's variables, the class' defaults.
	var values []string
	vars, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "topology", "variables")
	collectStrings(vars, &values)
	classVars, _, _ := unstructured.NestedSlice(class.obj.Object, "spec", "variables")
	for _, v := range classVars {
		if m, ok := v.(map[string]any); ok {
			def, _, _ := unstructured.NestedFieldNoCopy(m, "schema", "openAPIV3Schema", "default")
			collectStrings(def, &values)
		}
	}
	for _, v := range values {
		servers[v], thumbprints[v] = true, true
	}
	delete(servers, "")
	if !servers[server] || !thumbprints[thumbprint] {
		return fmt.Errorf("VSphereCluster %s (generated from ClusterClass %s/%s) names server %q (thumbprint %q), which neither the class' %s %s nor the Cluster's topology variables give; driftd logs in only where Git says",
			diff.KeyOf(vc), classNS, className, server, thumbprint, tplKind, tplName)
	}
	return nil
}

// collectStrings appends every string value in v (maps and lists walked).
func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

// listAll lists every object of a kind (cluster-scoped or in every namespace) through the API,
// or nothing when the kind is not served.
func (e *Engine) listAll(ctx context.Context, gvk schema.GroupVersionKind) ([]unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := e.deps.Client.List(ctx, list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// referenced reads the object a reference at path of obj names (a v1beta2 apiGroup/kind/name or a
// v1beta1 apiVersion/kind/name reference), in obj's namespace, or nil.
func (e *Engine) referenced(ctx context.Context, obj *unstructured.Unstructured, path ...string) *unstructured.Unstructured {
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
	mapping, err := e.deps.Mapper.RESTMapping(gk)
	if err != nil || name == "" {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mapping.GroupVersionKind)
	u.SetNamespace(obj.GetNamespace())
	u.SetName(name)
	live, err := e.getLive(ctx, u)
	if err != nil {
		return nil
	}
	return live
}

func (e *Engine) list(ctx context.Context, gvk schema.GroupVersionKind, ns string) ([]*unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := e.listReady(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing %s in %s: %w", gvk.Kind, ns, err)
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// listReady lists through the engine's Reader once the kind is readable.
func (e *Engine) listReady(ctx context.Context, list *unstructured.UnstructuredList, opts ...client.ListOption) error {
	if e.deps.Kinds != nil {
		gvk := list.GroupVersionKind()
		gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
		if err := e.deps.Kinds.Ready(ctx, gvk); err != nil {
			return err
		}
	}
	return e.deps.Reader.List(ctx, list, opts...)
}

func errOrNil(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}

// correctCloud announces cloud findings and makes the replacements and pool restores decided.
func (e *Engine) correctCloud(ctx context.Context, res *Result) {
	e.announceSuspect(ctx)
	// A finding the last look had and this one has not has ended: if it comes back, that is a new
	// occurrence, announced again (with what holds it back then).
	current := map[diff.Key]bool{}
	for _, f := range res.Findings {
		current[cloudKey(keyOfRef(f.Object), f)] = true
	}
	e.mu.Lock()
	for k := range e.cloudAnnounced {
		if !current[k] {
			e.deps.Events.Forget(k)
		}
	}
	e.cloudAnnounced = current
	e.mu.Unlock()
	for _, f := range res.Findings {
		key := keyOfRef(f.Object)
		target := e.liveTarget(ctx, f.Object)
		announced := e.deps.Events.Detected(target, cloudKey(key, f), f)
		switch {
		case f.Action == diff.ActionReplace:
			e.mu.Lock()
			r := e.replacements[key]
			e.mu.Unlock()
			err := e.replace(ctx, r)
			if err == nil {
				e.deps.Events.Replaced(target, f, string(r.Method))
			}
			e.cloudCorrected(res, target, key, f, err)
		case f.Action == diff.ActionApply && f.Class == diff.ClassNodePoolMismatch:
			e.cloudCorrected(res, target, key, f, e.restorePool(ctx, f))
		case f.Action == diff.ActionBlocked && announced:
			e.deps.Events.Blocked(target, f)
			e.deps.Metrics.Corrections.WithLabelValues("blocked").Inc()
		}
	}
}

// announceSuspect records an InventorySuspect Warning on each Cluster whose inventory is
// distrusted, once per occurrence.
func (e *Engine) announceSuspect(ctx context.Context) {
	e.mu.Lock()
	current := maps.Clone(e.suspect)
	var fresh []string
	for k, why := range current {
		if e.announcedSuspect[k] != why {
			fresh = append(fresh, k)
		}
	}
	for k := range e.announcedSuspect {
		if _, still := current[k]; !still {
			delete(e.announcedSuspect, k)
		}
	}
	for _, k := range fresh {
		e.announcedSuspect[k] = current[k]
	}
	e.mu.Unlock()
	sort.Strings(fresh)
	for _, k := range fresh {
		ns, name, _ := strings.Cut(k, "/")
		target := e.liveTarget(ctx, diff.ObjectRef{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "Cluster", Namespace: ns, Name: name})
		e.deps.Events.Warning(target, report.ReasonInventorySuspect, current[k])
		e.deps.Log.Info("Inventory suspect: no replacement", "cluster", k, "reason", current[k])
	}
}

// liveTarget is the object an Event about ref is recorded on: the live object when there is one.
func (e *Engine) liveTarget(ctx context.Context, ref diff.ObjectRef) runtime.Object {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(ref.APIVersion)
	u.SetKind(ref.Kind)
	u.SetNamespace(ref.Namespace)
	u.SetName(ref.Name)
	if live, err := e.getLive(ctx, u); err == nil && live != nil {
		return live
	}
	return u
}

// cloudKey keeps cloud findings apart from spec findings of the same object in the announcements.
func cloudKey(k diff.Key, f diff.Finding) diff.Key {
	k.Kind = k.Kind + "#" + string(f.Layer)
	return k
}

func (e *Engine) cloudCorrected(res *Result, target runtime.Object, key diff.Key, f diff.Finding, err error) {
	if err != nil {
		res.Errors = append(res.Errors, err)
		if f.Class == diff.ClassNodePoolMismatch && f.Pool != nil {
			e.deps.Metrics.CloudErrors.WithLabelValues(f.Pool.Provider).Inc() // a cloud write that failed
		}
		if e.deps.Events.Failed(target, cloudKey(key, f), f, err, "") {
			e.deps.Metrics.Corrections.WithLabelValues("failed").Inc()
		}
		return
	}
	res.markCorrected(key)
	e.deps.Metrics.Corrections.WithLabelValues("succeeded").Inc()
	if f.Class == diff.ClassNodePoolMismatch {
		e.deps.Events.Corrected(target, cloudKey(key, f), f)
	}
	e.deps.Log.Info("Cloud drift corrected", "object", f.Object.String(), "class", f.Class, "action", f.Action, "reason", f.Reason)
}

// replace asks for a Machine's replacement: the remediate annotation for its MachineHealthCheck
// (server-side apply of that annotation alone), or a delete for its MachineSet.
func (e *Engine) replace(ctx context.Context, r diff.Replacement) error {
	m := r.Machine
	switch r.Method {
	case diff.ReplaceRemediate:
		patch := &unstructured.Unstructured{}
		patch.SetGroupVersionKind(m.GroupVersionKind())
		patch.SetNamespace(m.GetNamespace())
		patch.SetName(m.GetName())
		patch.SetAnnotations(map[string]string{diff.AnnotationRemediateMachine: ""})
		if err := e.deps.Client.Patch(ctx, patch, client.Apply, client.FieldOwner(apply.FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("Machine %s/%s: annotating for remediation: %w", m.GetNamespace(), m.GetName(), err)
		}
		return nil
	case diff.ReplaceDelete:
		return e.app.Delete(ctx, m).Err
	}
	return fmt.Errorf("Machine %s/%s: unknown replacement %q", m.GetNamespace(), m.GetName(), r.Method)
}

func (e *Engine) restorePool(ctx context.Context, f diff.Finding) error {
	if f.Pool == nil {
		return errors.New("no node pool")
	}
	for _, inv := range e.opts.Cloud.Inventories {
		restorer, ok := inv.(PoolRestorer)
		if !ok || inv.Provider() != f.Pool.Provider {
			continue
		}
		var desired *int32
		minSize, maxSize := f.Pool.Min, f.Pool.Max
		for _, fd := range f.Fields {
			n, _ := fd.Desired.(int64)
			switch fd.Path {
			case "/spec/replicas":
				v := int32(n)
				desired = &v
			case "/spec/minSize":
				minSize = int32(n)
			case "/spec/maxSize":
				maxSize = int32(n)
			}
		}
		e.mu.Lock()
		cluster, ok := e.cloudScopeByKey[f.Pool.Cluster]
		e.mu.Unlock()
		if !ok {
			return fmt.Errorf("cluster %s of node pool %s is no longer in scope", f.Pool.Cluster, f.Pool.Name)
		}
		return restorer.RestorePool(ctx, cluster, f.Pool.Name, desired, minSize, maxSize)
	}
	return fmt.Errorf("provider %s cannot restore node pools", f.Pool.Provider)
}
