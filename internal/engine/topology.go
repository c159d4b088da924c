package engine

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

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
		d := s.desired[key]
		if !d.topology {
			continue
		}
		cluster := d.object()
		mds, err := e.generatedMachineDeployments(ctx, cluster)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: listing the MachineDeployments of its topology: %w", key, err))
			continue
		}
		for _, md := range mds {
			generated[diff.KeyOf(md)] = key
		}
		for _, f := range diff.TopologyFindings(cluster, mds, e.situation(ctx, s, key, nil)) {
			k := f.Object.Key()
			out[k] = f
			e.noteTopology(k, f, findByKey(mds, k), act)
		}
	}
	e.mu.Lock()
	e.topologyMDs = generated
	e.mu.Unlock()
	keep := make(map[diff.Key]bool, len(out))
	for k := range out {
		keep[k] = true
	}
	e.ledger.Replace(report.SetTopology, keep)
	return out, errs
}

// noteTopology records the drift of a generated MachineDeployment, and announces it when act is set.
func (e *Engine) noteTopology(key diff.Key, f diff.Finding, live *unstructured.Unstructured, act bool) {
	entry := report.Entry{Set: report.SetTopology, Key: key}
	if act && live != nil {
		e.ledger.Drift(live, entry, f)
		return
	}
	e.ledger.Keep(entry, f)
}

func (e *Engine) generatedMachineDeployments(ctx context.Context, cluster *unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	if e.deps.Kinds != nil {
		if err := e.deps.Kinds.Ready(ctx, diff.GVKMachineDeployment); err != nil {
			return nil, err
		}
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(diff.GVKMachineDeployment.GroupVersion().WithKind("MachineDeploymentList"))
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
	cluster := d.object()
	mds, err := e.generatedMachineDeployments(ctx, cluster)
	if err != nil {
		return outcome{err: fmt.Errorf("%s: listing the MachineDeployments of its topology: %w", clusterKey, err)}
	}
	for _, f := range diff.TopologyFindings(cluster, mds, e.situation(ctx, s, clusterKey, nil)) {
		if f.Object.Key() == key {
			e.noteTopology(key, f, findByKey(mds, key), act)
			return outcome{finding: &f}
		}
	}
	e.ledger.Clear(report.Entry{Set: report.SetTopology, Key: key})
	return outcome{}
}

func findByKey(objs []*unstructured.Unstructured, key diff.Key) *unstructured.Unstructured {
	for _, o := range objs {
		if diff.KeyOf(o) == key {
			return o
		}
	}
	return nil
}
