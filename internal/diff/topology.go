package diff

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// Labels Cluster API sets on the MachineDeployments it generates from a Cluster's topology.
const (
	LabelTopologyOwned          = clusterv1.ClusterTopologyOwnedLabel
	LabelTopologyDeploymentName = clusterv1.ClusterTopologyMachineDeploymentNameLabel
)

// TopologyFindings judges the MachineDeployments Cluster API generated from a Cluster's topology
// (live, carrying the topology labels) against that topology as Git has it. Only replicas are
// compared: versions roll out gradually by design. Such drift is corrected through the Cluster,
// never by editing the MachineDeployment, so the action is a report; Cluster API's topology
// controller restores the MachineDeployment from the Cluster, which driftd keeps equal to Git.
func TopologyFindings(cluster *unstructured.Unstructured, generated []*unstructured.Unstructured, sit Situation) []Finding {
	entries, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "topology", "workers", "machineDeployments")
	want := map[string]int64{}
	for _, e := range entries {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["name"].(string)
		replicas, ok, _ := unstructured.NestedFieldNoCopy(m, "replicas")
		if name == "" || !ok {
			continue // no replicas in the topology: the autoscaler or CAPI's default owns them
		}
		if ann, _, _ := unstructured.NestedStringMap(m, "metadata", "annotations"); ann[AnnotationAutoscalerMin] != "" && ann[AnnotationAutoscalerMax] != "" {
			continue
		}
		if n, ok := number(replicas); ok {
			want[name] = int64(n)
		}
	}
	var out []Finding
	for _, md := range generated {
		labels := md.GetLabels()
		if labels[LabelClusterName] != cluster.GetName() || md.GetNamespace() != cluster.GetNamespace() {
			continue
		}
		desired, ok := want[labels[LabelTopologyDeploymentName]]
		if !ok || replicasManagedElsewhere(md) {
			continue
		}
		stored := md.DeepCopy()
		if err := unstructured.SetNestedField(stored.Object, desired, "spec", "replicas"); err != nil {
			continue
		}
		fields := Compare(stored, md, nil, nil)
		if len(fields) == 0 {
			continue
		}
		reason := fmt.Sprintf("generated from the topology of Cluster %s: corrected through the Cluster by Cluster API's topology controller, not edited by driftd", cluster.GetName())
		switch {
		case sit.Deleting:
			reason += fmt.Sprintf("; cluster %s is being deleted", cluster.GetName())
		case sit.Paused:
			reason += fmt.Sprintf("; cluster %s is paused", cluster.GetName())
		}
		out = append(out, Finding{
			Layer: LayerSpec, Class: ClassModified, Cluster: cluster.GetName(), Object: RefOf(md), Fields: fields,
			Action: ActionReport, Reason: reason,
		})
	}
	return out
}
