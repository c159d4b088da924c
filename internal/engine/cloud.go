package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	// Inventories are the providers to read (infra/aws, infra/vsphere).
	Inventories []Inventory
	// Writes lets driftd restore an Auto Scaling group's sizes (UpdateAutoScalingGroup).
	Writes bool
	// Budget is how many Machine replacements may be in flight per MachineDeployment, MachineSet
	// or control plane; 1 when zero.
	Budget int
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
	// Provider is infra.ProviderAWS or infra.ProviderVSphere.
	Provider() string
	// Snapshot reads the inventory of clusters. An error or an incomplete snapshot means nothing
	// may be concluded from what is absent.
	Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error)
}

// PoolRestorer is an inventory that can restore a node pool's sizes.
type PoolRestorer interface {
	RestorePool(ctx context.Context, region, name string, desired *int32, minSize, maxSize int32) error
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

func (e *Engine) evaluateCloud(ctx context.Context, s *snapshot, res *Result) {
	now := time.Now
	if e.opts.Cloud.Now != nil {
		now = e.opts.Cloud.Now
	}
	grace := e.opts.Cloud.Grace
	if grace == 0 {
		grace = 10 * time.Minute
	}
	scope, errs := e.cloudScope(ctx, s)
	res.Errors = append(res.Errors, errs...)

	in := diff.CloudInput{Snapshots: map[string]*infra.Snapshot{}, Clusters: map[string]bool{}, Now: now(), Grace: grace}
	rin := diff.ReplaceInput{Paused: map[string]bool{}, Budget: e.opts.Cloud.Budget, Policy: e.opts.Policy}
	namespaces := map[string]bool{}
	for _, inv := range e.opts.Cloud.Inventories {
		var targets []infra.Cluster
		for _, sc := range scope {
			if sc.provider == inv.Provider() {
				targets = append(targets, sc.target)
			}
		}
		if len(targets) == 0 {
			continue
		}
		snap, err := inv.Snapshot(ctx, targets)
		if err == nil && !snap.Complete {
			err = errors.Join(snap.Errors...)
		}
		if snap != nil {
			for op, n := range snap.Calls {
				e.deps.Metrics.CloudCalls.WithLabelValues(inv.Provider(), op).Add(float64(n))
			}
		}
		if err != nil {
			err = fmt.Errorf("%s inventory unavailable; none of its machines is judged this cycle: %w", inv.Provider(), err)
			res.Errors = append(res.Errors, err)
			e.warn(report.ReasonInventoryUnavailable, err)
			continue
		}
		in.Snapshots[inv.Provider()] = snap
		for _, sc := range scope {
			if sc.provider == inv.Provider() {
				in.Clusters[sc.cluster.GetName()] = true
				namespaces[sc.cluster.GetNamespace()] = true
				if diff.IsPaused(sc.cluster) {
					rin.Paused[sc.cluster.GetNamespace()+"/"+sc.cluster.GetName()] = true
				}
			}
		}
	}
	for ns := range namespaces {
		machines, err := e.list(ctx, gvkMachine, ns)
		if err != nil {
			res.Errors = append(res.Errors, err)
			continue
		}
		for _, m := range machines {
			cluster, _, _ := unstructured.NestedString(m.Object, "spec", "clusterName")
			if !in.Clusters[cluster] {
				continue
			}
			rin.Machines = append(rin.Machines, m)
			in.Machines = append(in.Machines, diff.CloudMachine{Machine: m, Infra: e.referenced(ctx, m, "spec", "infrastructureRef")})
		}
		mhcs, err := e.list(ctx, gvkMHC, ns)
		res.Errors = append(res.Errors, errOrNil(err)...)
		rin.MHCs = append(rin.MHCs, mhcs...)
		pools, err := e.list(ctx, gvkMachinePool, ns)
		res.Errors = append(res.Errors, errOrNil(err)...)
		for _, p := range pools {
			cluster, _, _ := unstructured.NestedString(p.Object, "spec", "clusterName")
			if in.Clusters[cluster] {
				in.Pools = append(in.Pools, diff.CloudPool{MachinePool: p, Infra: e.referenced(ctx, p, "spec", "template", "spec", "infrastructureRef")})
			}
		}
	}
	findings, replacements := diff.DecideMachines(diff.CloudFindings(in), rin)
	byMachine := map[diff.Key]diff.Replacement{}
	for _, r := range replacements {
		byMachine[diff.KeyOf(r.Machine)] = r
	}
	e.mu.Lock()
	e.replacements = byMachine
	e.mu.Unlock()
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
}

func (e *Engine) decidePool(f *diff.Finding, rin diff.ReplaceInput) (diff.Action, string) {
	switch {
	case e.opts.Policy.Mode == diff.ModeDetect:
		return diff.ActionReport, "detect mode"
	case !e.opts.Cloud.Writes:
		return diff.ActionReport, "cloud writes are off (--cloud-writes restores the group)"
	case rin.Paused[f.Object.Namespace+"/"+f.Cluster]:
		return diff.ActionBlocked, fmt.Sprintf("cluster %s is paused", f.Cluster)
	}
	return diff.ActionApply, "UpdateAutoScalingGroup restores the group's sizes"
}

// cloudScope finds the rendered Clusters and their live AWSCluster or VSphereCluster.
func (e *Engine) cloudScope(ctx context.Context, s *snapshot) ([]scopeCluster, []error) {
	var out []scopeCluster
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
		switch infraCluster.GetKind() {
		case "AWSCluster":
			sc.provider = infra.ProviderAWS
			sc.target.Region, _, _ = unstructured.NestedString(infraCluster.Object, "spec", "region")
		case "VSphereCluster":
			sc.provider = infra.ProviderVSphere
			if err := e.vsphereTarget(ctx, infraCluster, &sc.target); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", diff.KeyOf(infraCluster), err))
				continue
			}
		default:
			continue
		}
		out = append(out, sc)
	}
	return out, errs
}

// vsphereTarget reads a VSphereCluster's endpoint and credentials, and the folders of its machines.
func (e *Engine) vsphereTarget(ctx context.Context, vc *unstructured.Unstructured, t *infra.Cluster) error {
	t.Server, _, _ = unstructured.NestedString(vc.Object, "spec", "server")
	t.Thumbprint, _, _ = unstructured.NestedString(vc.Object, "spec", "thumbprint")
	kind, _, _ := unstructured.NestedString(vc.Object, "spec", "identityRef", "kind")
	name, _, _ := unstructured.NestedString(vc.Object, "spec", "identityRef", "name")
	secretNS, secretName := vc.GetNamespace(), name
	switch kind {
	case "Secret":
	case "VSphereClusterIdentity":
		id := &unstructured.Unstructured{}
		id.SetGroupVersionKind(schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "VSphereClusterIdentity"})
		if err := e.deps.Client.Get(ctx, client.ObjectKey{Name: name}, id); err != nil {
			return fmt.Errorf("reading VSphereClusterIdentity %s: %w", name, err)
		}
		secretName, _, _ = unstructured.NestedString(id.Object, "spec", "secretName")
		secretNS = e.opts.Cloud.IdentityNamespace
	default:
		return errors.New("spec.identityRef names no Secret or VSphereClusterIdentity; driftd cannot log in to its vCenter")
	}
	secret := &corev1.Secret{}
	if err := e.deps.Client.Get(ctx, client.ObjectKey{Namespace: secretNS, Name: secretName}, secret); err != nil {
		return fmt.Errorf("reading the identity Secret %s/%s: %w", secretNS, secretName, err)
	}
	t.Username, t.Password = string(secret.Data["username"]), string(secret.Data["password"])
	// The folders of the cluster's VSphereMachines hold its VMs.
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "VSphereMachineList"})
	if err := e.listReady(ctx, list, client.InNamespace(vc.GetNamespace()), client.MatchingLabels{diff.LabelClusterName: t.Name}); err == nil {
		seen := map[string]bool{}
		for _, m := range list.Items {
			if f, _, _ := unstructured.NestedString(m.Object, "spec", "folder"); f != "" && !seen[f] {
				seen[f] = true
				t.Folders = append(t.Folders, f)
			}
		}
		sort.Strings(t.Folders)
	}
	return nil
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
		return restorer.RestorePool(ctx, f.Pool.Region, f.Pool.Name, desired, minSize, maxSize)
	}
	return fmt.Errorf("provider %s cannot restore node pools", f.Pool.Provider)
}
