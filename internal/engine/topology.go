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
func (e *Engine) topologyFindings(ctx context.Context) (map[diff.Key]diff.Finding, []error) {
	out := map[diff.Key]diff.Finding{}
	generated := map[diff.Key]diff.Key{}
	var errs []error
	for _, key := range e.order {
		if key.Kind != "Cluster" || key.Group != "cluster.x-k8s.io" {
			continue
		}
		cluster := e.desired[key].obj
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
		paused := e.clusterPaused(ctx, cluster.GetName(), cluster.GetNamespace())
		for _, f := range diff.TopologyFindings(cluster, mds) {
			if paused {
				f.Reason += fmt.Sprintf("; cluster %s is paused", cluster.GetName())
			}
			out[keyOfRef(f.Object)] = f
		}
	}
	e.topologyMDs = generated
	return out, errs
}

func (e *Engine) generatedMachineDeployments(ctx context.Context, cluster *unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
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
func (e *Engine) reconcileTopology(ctx context.Context, key diff.Key) error {
	clusterKey, ok := e.topologyMDs[key]
	if !ok {
		return nil
	}
	d, ok := e.desired[clusterKey]
	if !ok {
		return nil
	}
	mds, err := e.generatedMachineDeployments(ctx, d.obj)
	if err != nil {
		return err
	}
	var found *diff.Finding
	for _, f := range diff.TopologyFindings(d.obj, mds) {
		if keyOfRef(f.Object) == key {
			found = &f
		}
	}
	return e.settle(ctx, key, found)
}
