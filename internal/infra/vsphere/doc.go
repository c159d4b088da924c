// Package vsphere reads the VMs of Cluster API clusters on vSphere (CAPV) with govmomi: one
// session per vCenter, one container view and one property-collector retrieve per cycle for every
// VM (name, BIOS UUID, CPU, memory, power state, folder) and the folders that name them.
//
// The endpoint and credentials come from each VSphereCluster (spec.server, spec.thumbprint, the
// spec.identityRef Secret), read by the engine into infra.Cluster; a thumbprint pins the server's
// certificate, without one the system's certificate authorities are trusted.
package vsphere
