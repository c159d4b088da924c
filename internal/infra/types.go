package infra

import (
	"sync"
	"time"
)

// Provider names. An inventory endpoint's provider is named by the scheme of its providerIDs.
const (
	ProviderAWS     = "aws"
	ProviderVSphere = "vsphere"
)

// Instance states, normalised across providers.
const (
	StateRunning    = "running"
	StatePending    = "pending"
	StateStopped    = "stopped"
	StateStopping   = "stopping"
	StateTerminated = "terminated"
	StateSuspended  = "suspended"
)

// Instance is one machine in the cloud.
type Instance struct {
	// Provider is ProviderAWS, ProviderVSphere or an inventory endpoint's name.
	Provider string `json:"provider"`
	// ID is the EC2 instance ID, the VM's BIOS UUID, or what follows "<scheme>://" in an
	// endpoint's providerID.
	ID string `json:"id"`
	// ProviderID is the ID as Cluster API writes it on a Machine (aws:///zone/id, vsphere://uuid).
	ProviderID string `json:"providerID"`
	// Cluster is the Cluster API cluster the instance is tagged or placed for, as
	// "namespace/name" (Cluster.Key), or "" when it belongs to no cluster in scope.
	Cluster string `json:"cluster,omitempty"`
	// Role is control-plane or node, from CAPA's role tag.
	Role string `json:"role,omitempty"`
	// Name is the Name tag or the VM name.
	Name string `json:"name,omitempty"`
	// MachineName is CAPA's MachineName tag, "<namespace>/<machine>".
	MachineName string `json:"machineName,omitempty"`
	// Type is the EC2 instance type.
	Type string `json:"type,omitempty"`
	// CPUs and MemoryMiB are a VM's size.
	CPUs      int32 `json:"cpus,omitempty"`
	MemoryMiB int64 `json:"memoryMiB,omitempty"`
	// Image is the AMI or the template the instance came from, where the provider reports it.
	Image string `json:"image,omitempty"`
	// State is one of the State constants.
	State string `json:"state"`
	// Zone is the availability zone.
	Zone string `json:"zone,omitempty"`
	// Region is the AWS region or the vCenter server.
	Region string `json:"region,omitempty"`
	// LaunchTime is when the instance started; zero when unknown.
	LaunchTime time.Time `json:"launchTime,omitempty"`
	// Folder is a VM's inventory folder path.
	Folder string `json:"folder,omitempty"`
	// Pool is the Auto Scaling group or resource pool the instance belongs to.
	Pool string `json:"pool,omitempty"`
	// Tags are the instance's tags.
	Tags map[string]string `json:"-"`
}

// NodePool is an Auto Scaling group (or a VM pool) with its sizes.
type NodePool struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	// Cluster is "namespace/name" (Cluster.Key).
	Cluster string   `json:"cluster,omitempty"`
	Region  string   `json:"region,omitempty"`
	Desired int32    `json:"desired"`
	Min     int32    `json:"min"`
	Max     int32    `json:"max"`
	Members []string `json:"members,omitempty"`
}

// Cluster is a Cluster API cluster whose inventory a provider reads, with what the provider needs
// to reach it — with the cluster's own identity — taken from its AWSCluster or VSphereCluster.
type Cluster struct {
	Name, Namespace string
	// Region is the AWSCluster's region.
	Region string
	// AWS is the identity to read an AWS cluster with; nil is the default credential chain
	// (CAPA's controller identity).
	AWS *AWSIdentity
	// Server and Thumbprint reach a VSphereCluster's vCenter; VCenters are every vCenter its
	// machines live on (failure domains), Server's first.
	Server, Thumbprint string
	VCenters           []VCenter
	// VSphere is the identity to log in to Servers with.
	VSphere *VSphereIdentity
	// Folders are the VM folders of the cluster's machines; a VM there that no Machine references
	// is unmanaged.
	Folders []string
	// InfrastructureGroup, InfrastructureKind and InfrastructureName are the Cluster's
	// infrastructureRef, which an inventory endpoint may find the cluster's machines by.
	InfrastructureGroup, InfrastructureKind, InfrastructureName string
}

// Key is "namespace/name": clusters are matched by both everywhere.
func (c Cluster) Key() string { return c.Namespace + "/" + c.Name }

// AWSIdentity is how to get credentials for one AWS account: static keys or the default chain,
// then roles assumed in order (CAPA's AWSClusterStaticIdentity, AWSClusterControllerIdentity and
// AWSClusterRoleIdentity chained through sourceIdentityRef).
type AWSIdentity struct {
	// Key names the identity (e.g. "AWSClusterRoleIdentity/account-b"): clusters with the same key
	// and region share one snapshot.
	Key string
	// Static are the keys of an AWSClusterStaticIdentity; nil starts from the default chain.
	Static *StaticCredentials
	// Roles are assumed one after the other, the last one's credentials reading the inventory.
	Roles []AssumeRole
}

// StaticCredentials are AWS keys. They are secrets: never logged or printed.
type StaticCredentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// AssumeRole is one sts:AssumeRole step.
type AssumeRole struct {
	ARN, ExternalID, SessionName string
}

// VCenter is one vCenter server and the thumbprint its certificate must have ("" trusts the
// system's CAs).
type VCenter struct {
	Server, Thumbprint string
}

// VSphereIdentity are the credentials of a vCenter login.
type VSphereIdentity struct {
	// Key names the identity ("Secret/ns/name", "VSphereClusterIdentity/name"): one session per
	// (server, identity).
	Key string
	// Username and Password are secrets: never logged or printed.
	Username, Password string
}

// Snapshot is one provider's answer for the clusters in scope.
type Snapshot struct {
	Provider  string
	Instances []Instance
	Pools     []NodePool
	// Complete is true only when every call for every cluster in scope succeeded and every page was
	// read. Only a complete answer may show that an instance is gone.
	Complete bool
	// Errors say what could not be read.
	Errors []error
	// Unavailable are the clusters (by Key) whose inventory could not be read completely, with why:
	// nothing may be concluded from what is absent for them, while the other clusters are judged.
	Unavailable map[string]error
	// Unknown counts, by location (an AWS region, a vCenter server), the instances that were seen
	// but could not be read (a VM whose config is inaccessible): a missing instance there may be
	// one of them.
	Unknown map[string]int
	// Folders are, by cluster (Key), the inventory folders the sessions that read it could see: a
	// VM in a folder its cluster's identity cannot see is unknown, never missing.
	Folders map[string]map[string]bool
	// Calls counts the cloud API calls made, by operation.
	Calls map[string]int
}

// NewSnapshot returns an empty, complete snapshot of provider.
func NewSnapshot(provider string) *Snapshot {
	return &Snapshot{Provider: provider, Complete: true, Calls: map[string]int{}, Unavailable: map[string]error{},
		Unknown: map[string]int{}, Folders: map[string]map[string]bool{}}
}

// FailClusters records that clusters could not be read, with err: they are unavailable, the rest
// of the snapshot stands.
func (s *Snapshot) FailClusters(err error, clusters ...Cluster) {
	for _, c := range clusters {
		s.Unavailable[c.Key()] = err
	}
	s.Errors = append(s.Errors, err)
}

// Fail records what could not be read: the snapshot is no longer complete.
func (s *Snapshot) Fail(err error) {
	s.Complete = false
	s.Errors = append(s.Errors, err)
}

// CallCounter returns a function, safe for concurrent use, that counts one API call of an
// operation in s.Calls and passes it on to onCall (when set).
func (s *Snapshot) CallCounter(onCall func(operation string)) func(operation string) {
	var mu sync.Mutex
	return func(op string) {
		mu.Lock()
		s.Calls[op]++
		mu.Unlock()
		if onCall != nil {
			onCall(op)
		}
	}
}
