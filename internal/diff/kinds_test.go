package diff

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestMetadataOnly(t *testing.T) {
	for _, tt := range []struct {
		gvk         schema.GroupVersionKind
		want, cloud bool // cached as metadata only, without and with the cloud comparison
	}{
		{GVKCluster, false, false},
		{GVKMachineDeployment, false, false},
		{GVKMachine, true, false},
		{GVKClusterClass, false, false},
		{GVKKubeadmControlPlane, true, false}, // the cloud comparison reads its replicas
		{schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSCluster"}, true, false},
		{schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSClusterRoleIdentity"}, true, false},
		{schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachineTemplate"}, true, true},
		{schema.GroupVersionKind{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"}, true, true},
		{schema.GroupVersionKind{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlaneTemplate"}, true, true},
		{schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachinePoolTemplate"}, true, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, true, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, true, true},
		{schema.GroupVersionKind{Group: "addons.cluster.x-k8s.io", Version: "v1beta2", Kind: "ClusterResourceSet"}, true, true},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, true, true},
		{schema.GroupVersionKind{Group: "evil.cluster.x-k8s.io.example.com", Version: "v1", Kind: "Cluster"}, true, true},
	} {
		if got := MetadataOnly(tt.gvk, false); got != tt.want {
			t.Errorf("MetadataOnly(%s, false) = %v, want %v", tt.gvk, got, tt.want)
		}
		if got := MetadataOnly(tt.gvk, true); got != tt.cloud {
			t.Errorf("MetadataOnly(%s, true) = %v, want %v", tt.gvk, got, tt.cloud)
		}
	}
}
