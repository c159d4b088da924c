package engine

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
)

var gvkMachineDeployment = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineDeployment"}

// topologyFindings judges the MachineDeployments generated from the topology of every rendered
// Cluster that has one.
func (e *Engine) topologyFindings(ctx context.Context, s *snapshot, act bool) (map[diff.Key]diff.Finding, []error) {
	out := map[diff.Key]diff.Finding{}
	generated := map[diff.Key]diff.Key{}
	var errs []error
	for _, key := range s.order {
		if key.Kind != "Cluster" || key.Group != "cluster.x-k8s.io" {
			continue
		}
		cluster := s.desired[key].obj
		if _, ok, _ := unstructured.NestedSlice(cluster.Object, "spec", "topology", "workers", "machineDeployments"); !ok {
			continue
		}
		mds, err := e.generatedMachineDeployments(ctx, cluster)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: listing the MachineDeployments of its topology: %w", key, err))
			continue
		}
		for _, md := range mds {
			generated[diff.KeyOf(md)] = key
		}
		for _, f := range e.judgeTopology(ctx, s, key, cluster, mds) {
			k := keyOfRef(f.Object)
			out[k] = f
			if live := findByKey(mds, k); act && live != nil {
				e.deps.Events.Detected(live, k, f)
			}
		}
	}
	e.mu.Lock()
	e.topologyMDs = generated
	previous := e.topology
	e.topology = out
	e.mu.Unlock()
	for k := range previous {
		if _, still := out[k]; !still {
			e.deps.Events.Forget(k)
		}
	}
	return out, errs
}

func (e *Engine) judgeTopology(ctx context.Context, s *snapshot, key diff.Key, cluster *unstructured.Unstructured, mds []*unstructured.Unstructured) []diff.Finding {
	sit := e.situation(ctx, s, key, nil)
	findings := diff.TopologyFindings(cluster, mds)
	for i := range findings {
		switch {
		case sit.Deleting:
			findings[i].Reason += fmt.Sprintf("; cluster %s is being deleted", cluster.GetName())
		case sit.Paused:
			findings[i].Reason += fmt.Sprintf("; cluster %s is paused", cluster.GetName())
		}
	}
	return findings
}

func (e *Engine) generatedMachineDeployments(ctx context.Context, cluster *unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	if e.deps.Kinds != nil {
		if err := e.deps.Kinds.Ready(ctx, gvkMachineDeployment); err != nil {
			return nil, err
		}
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvkMachineDeployment.GroupVersion().WithKind("MachineDeploymentList"))
	if err := e.deps.Reader.List(ctx, list, client.InNamespace(cluster.GetNamespace()),
		client.MatchingLabels{diff.LabelClusterName: cluster.GetName()}, client.HasLabels{diff.LabelTopologyOwned}); err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// reconcileTopology re-judges the generated MachineDeployment key after a watch saw it change.
// Such drift is corrected through the Cluster by Cluster API; driftd only reports it.
func (e *Engine) reconcileTopology(ctx context.Context, s *snapshot, key diff.Key, act bool) outcome {
	e.mu.Lock()
	clusterKey, ok := e.topologyMDs[key]
	e.mu.Unlock()
	if !ok {
		return outcome{}
	}
	d, ok := s.desired[clusterKey]
	if !ok {
		return outcome{}
	}
	mds, err := e.generatedMachineDeployments(ctx, d.obj)
	if err != nil {
		return outcome{err: fmt.Errorf("%s: listing the MachineDeployments of its topology: %w", clusterKey, err)}
	}
	var found *diff.Finding
	for _, f := range e.judgeTopology(ctx, s, clusterKey, d.obj, mds) {
		if keyOfRef(f.Object) == key {
			found = &f
		}
	}
	e.mu.Lock()
	if found == nil {
		delete(e.topology, key)
	} else {
		e.topology[key] = *found
	}
	e.mu.Unlock()
	if found == nil {
		e.deps.Events.Forget(key)
		return outcome{}
	}
	if act {
		if live := findByKey(mds, key); live != nil {
			e.deps.Events.Detected(live, key, *found)
		}
	}
	return outcome{finding: found}
}

func findByKey(objs []*unstructured.Unstructured, key diff.Key) *unstructured.Unstructured {
	for _, o := range objs {
		if diff.KeyOf(o) == key {
			return o
		}
	}
	return nil
}
