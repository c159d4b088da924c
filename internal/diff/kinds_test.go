package diff

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestMetadataOnly(t *testing.T) {
	for _, tt := range []struct {
		gvk  schema.GroupVersionKind
		want bool
	}{
		{GVKCluster, false},
		{GVKMachineDeployment, false},
		{GVKMachine, false},
		{GVKClusterClass, false},
		{GVKKubeadmControlPlane, false}, // the cloud layer and pacing read its replicas
		{schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSCluster"}, false},
		{schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSClusterRoleIdentity"}, false},
		{schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachineTemplate"}, true},
		{schema.GroupVersionKind{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"}, true},
		{schema.GroupVersionKind{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlaneTemplate"}, true},
		{schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachinePoolTemplate"}, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, true},
		{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, true},
		{schema.GroupVersionKind{Group: "addons.cluster.x-k8s.io", Version: "v1beta2", Kind: "ClusterResourceSet"}, false},
		{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, true},
		{schema.GroupVersionKind{Group: "evil.cluster.x-k8s.io.example.com", Version: "v1", Kind: "Cluster"}, true},
	} {
		if got := MetadataOnly(tt.gvk); got != tt.want {
			t.Errorf("MetadataOnly(%s) = %v, want %v", tt.gvk, got, tt.want)
		}
	}
}
