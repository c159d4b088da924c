package diff

import (
	"strings"

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
// them), and then reads it whole from the API; only what it reads on every cycle, pacing or cloud
// comparison is cached whole: Cluster API's own objects and the providers' clusters, machines, pools,
// control planes and identities. Templates of any provider — the largest objects of a fleet — and
// every other kind (ConfigMaps with their manifests, ClusterResourceSets, Namespaces…) are cached
// as metadata.
func MetadataOnly(gvk schema.GroupVersionKind) bool {
	if strings.HasSuffix(gvk.Kind, "Template") {
		return true
	}
	return gvk.Group != clusterv1.GroupVersion.Group && !strings.HasSuffix(gvk.Group, "."+clusterv1.GroupVersion.Group)
}
