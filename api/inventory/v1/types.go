// Package v1 is driftd's inventory protocol, inventory.driftd.io/v1: how driftd asks an
// infrastructure provider's endpoint for the instances and node pools of a set of clusters.
//
// driftd POSTs a SnapshotRequest as JSON to <url>/v1/snapshot with "Authorization: Bearer
// <token>" and reads a SnapshotResponse. When the response has a NextPageToken, driftd asks again
// with that token until a page has none; every page of one snapshot must come from one view of the
// inventory (an endpoint that pages over a list that changes between pages would show an instance
// as gone). The last page says whether the answer is Complete: only a complete answer lets driftd
// conclude that an instance is gone. docs/inventory.md describes the protocol with a JSON schema
// and an example exchange; examples/inventory-endpoint is a reference endpoint to start from.
//
// The package holds only the wire types, so that an endpoint written in Go can use them; the
// protocol is the JSON, and any language can serve it.
package v1

import "time"

// APIVersion is the protocol's version, sent in every request and expected in every response.
const APIVersion = "inventory.driftd.io/v1"

// SnapshotPath is where, under the endpoint's URL, driftd POSTs a SnapshotRequest.
const SnapshotPath = "/v1/snapshot"

// Instance states. An endpoint maps its own to one of these; any other value makes the instance's
// cluster unavailable for the cycle.
const (
	StateRunning    = "running"
	StatePending    = "pending"
	StateStopping   = "stopping"
	StateStopped    = "stopped"
	StateSuspended  = "suspended"
	StateTerminated = "terminated"
)

// ClusterRef names a Cluster API cluster: the namespace and name of its Cluster object.
type ClusterRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ObjectRef names the infrastructure cluster (the Cluster's spec.infrastructureRef).
type ObjectRef struct {
	APIGroup string `json:"apiGroup,omitempty"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

// RequestedCluster is a cluster driftd asks about.
type RequestedCluster struct {
	ClusterRef `json:",inline"`
	// InfrastructureRef is the cluster's infrastructure cluster, for endpoints that find a
	// cluster's machines through it.
	InfrastructureRef *ObjectRef `json:"infrastructureRef,omitempty"`
}

// SnapshotRequest asks for the instances and node pools of Clusters.
type SnapshotRequest struct {
	APIVersion string `json:"apiVersion"`
	// Clusters are the clusters to answer for: every instance placed for one of them, in any
	// state, and every node pool of one of them.
	Clusters []RequestedCluster `json:"clusters"`
	// PageToken is the NextPageToken of the previous page; empty for the first.
	PageToken string `json:"pageToken,omitempty"`
}

// SnapshotResponse is one page of the answer.
type SnapshotResponse struct {
	APIVersion string     `json:"apiVersion"`
	Instances  []Instance `json:"instances"`
	Pools      []NodePool `json:"pools,omitempty"`
	// Unavailable are the clusters the endpoint could not read completely, with why: driftd
	// judges none of their machines this cycle and the rest of the fleet as usual.
	Unavailable []UnavailableCluster `json:"unavailable,omitempty"`
	// Complete, on the last page, says that every instance of every requested cluster (but the
	// unavailable ones) is in the answer. Only a complete answer shows that an instance is gone.
	Complete bool `json:"complete"`
	// NextPageToken, when set, asks driftd for another page; opaque to driftd.
	NextPageToken string `json:"nextPageToken,omitempty"`
}

// Instance is one machine of the provider.
type Instance struct {
	// ProviderID is the ID as the provider's controller writes it on a Machine's spec.providerID
	// (<scheme>://...): the key driftd matches Machines and instances on. Required.
	ProviderID string `json:"providerID"`
	// Cluster is the cluster the instance is placed for. Required.
	Cluster ClusterRef `json:"cluster"`
	// State is one of the State constants. Required.
	State string `json:"state"`
	// LaunchTime is when the instance was created (RFC 3339); an instance with none, or younger
	// than driftd's --unmanaged-grace, is never reported as unmanaged.
	LaunchTime *time.Time `json:"launchTime,omitempty"`
	// Name is a human name for reports.
	Name string `json:"name,omitempty"`
	// Type is the instance's size or flavour and Image what it was created from; driftd compares
	// them with the infrastructure machine's fields the provider's configuration names.
	Type  string `json:"type,omitempty"`
	Image string `json:"image,omitempty"`
	// Zone is where the instance runs, for reports.
	Zone string `json:"zone,omitempty"`
	// Pool is the node pool the instance is a member of.
	Pool string `json:"pool,omitempty"`
}

// NodePool is a group the provider scales itself, backing a MachinePool of the same name.
type NodePool struct {
	Name    string     `json:"name"`
	Cluster ClusterRef `json:"cluster"`
	Desired int32      `json:"desired"`
	Min     int32      `json:"min"`
	Max     int32      `json:"max"`
	// Members are the ProviderIDs of its instances.
	Members []string `json:"members,omitempty"`
}

// UnavailableCluster is a cluster the endpoint could not read, with why.
type UnavailableCluster struct {
	Cluster ClusterRef `json:"cluster"`
	Reason  string     `json:"reason"`
}

// Status is the JSON body of an error response (any status other than 200).
type Status struct {
	APIVersion string `json:"apiVersion"`
	Message    string `json:"message"`
}
