package diff

import (
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// The Cluster API kinds driftd reads, at the version it reads them (Cluster API's own
// GroupVersions).
var (
	GVKCluster             = clusterv1.GroupVersion.WithKind("Cluster")
	GVKClusterClass        = clusterv1.GroupVersion.WithKind("ClusterClass")
	GVKMachine             = clusterv1.GroupVersion.WithKind("Machine")
	GVKMachineSet          = clusterv1.GroupVersion.WithKind("MachineSet")
	GVKMachineDeployment   = clusterv1.GroupVersion.WithKind("MachineDeployment")
	GVKMachinePool         = clusterv1.GroupVersion.WithKind("MachinePool")
	GVKMachineHealthCheck  = clusterv1.GroupVersion.WithKind("MachineHealthCheck")
	GVKKubeadmControlPlane = controlplanev1.GroupVersion.WithKind("KubeadmControlPlane")
)

// MetadataOnly says whether the daemon caches only the metadata of gvk's objects. driftd compares
// an object's content only when its generation, labels or annotations moved (the memo is keyed on
// them), and then reads it whole from the API; only what it reads on every cycle is cached whole:
// Clusters (paused or not), MachineDeployments and MachinePools (the topology's pools, their
// replicas), ClusterClasses, and — when cloud, the comparison with the cloud inventory, reads the
// fleet — every other non-template kind of Cluster API's core, infrastructure and control plane
// groups (the providers' clusters, machines, pools and identities, control planes' replicas,
// MachineHealthChecks). Templates of any provider — the largest objects of a fleet — and every other
// kind (ConfigMaps with their manifests, ClusterResourceSets, Namespaces…) are cached as metadata.
func MetadataOnly(gvk schema.GroupVersionKind, cloud bool) bool {
	core := clusterv1.GroupVersion.Group
	switch {
	case strings.HasSuffix(gvk.Kind, "Template"):
		return true
	case gvk.Group == core && (gvk.Kind == "Cluster" || gvk.Kind == "MachineDeployment" || gvk.Kind == "MachinePool" || gvk.Kind == "ClusterClass"):
		return false
	case cloud:
		return gvk.Group != core && gvk.Group != "infrastructure."+core && gvk.Group != "controlplane."+core
	}
	return true
}

// TrimCached drops from a live object, as the daemon's cache takes it in, what driftd never reads
// there: a Machine's status but its phase and nodeRef, and the whole status of a provider's machine
// (an AWSMachine, a VSphereMachine…). Their conditions, addresses and node information are most
// of what a provisioned Machine weighs, and a fleet holds more Machines than anything else. From
// the cache, only the comparison with the cloud reads them (CloudFindings, PlanReplacements,
// Vanished: a Machine's metadata, spec, phase and Node; a provider machine's spec); the rollout
// prediction and its progress read Machines from the API, whole. It reports whether it dropped
// anything.
func TrimCached(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	status, ok := u.Object["status"].(map[string]any)
	if !ok {
		return false
	}
	switch {
	case gvk.Group == GVKMachine.Group && gvk.Kind == GVKMachine.Kind:
		kept := map[string]any{}
		for _, f := range []string{"phase", "nodeRef"} {
			if v, ok := status[f]; ok {
				kept[f] = v
			}
		}
		if len(kept) == len(status) {
			return false
		}
		u.Object["status"] = kept
		return true
	case gvk.Group == "infrastructure."+GVKMachine.Group && strings.HasSuffix(gvk.Kind, "Machine"):
		delete(u.Object, "status")
		return true
	}
	return false
}
