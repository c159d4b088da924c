package diff

import (
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
