package infra

import (
	"sync"
	"time"
)

// Provider names.
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
	// Provider is ProviderAWS or ProviderVSphere.
	Provider string `json:"provider"`
	// ID is the EC2 instance ID or the VM's BIOS UUID.
	ID string `json:"id"`
	// ProviderID is the ID as Cluster API writes it on a Machine (aws:///zone/id, vsphere://uuid).
	ProviderID string `json:"providerID"`
	// Cluster is the Cluster API cluster the instance is tagged or placed for.
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
	Provider string   `json:"provider"`
	Name     string   `json:"name"`
	Cluster  string   `json:"cluster,omitempty"`
	Region   string   `json:"region,omitempty"`
	Desired  int32    `json:"desired"`
	Min      int32    `json:"min"`
	Max      int32    `json:"max"`
	Members  []string `json:"members,omitempty"`
}

// Cluster is a Cluster API cluster whose inventory a provider reads, with what the provider needs
// to reach it, taken from its AWSCluster or VSphereCluster.
type Cluster struct {
	Name, Namespace string
	// Region is the AWSCluster's region.
	Region string
	// Server, Thumbprint, Username and Password reach a VSphereCluster's vCenter. Password is a
	// secret: never logged or printed.
	Server, Thumbprint, Username, Password string
	// Folders are the VM folders of the cluster's machines; a VM there that no Machine references
	// is unmanaged.
	Folders []string
}

// Snapshot is one provider's answer for the clusters in scope.
type Snapshot struct {
	Provider  string
	Instances []Instance
	Pools     []NodePool
	// Complete is true only when every call for every cluster in scope succeeded and every page was
	// read. Only a complete snapshot may show that an instance is gone.
	Complete bool
	// Errors say what could not be read.
	Errors []error
	// Calls counts the cloud API calls made, by operation.
	Calls map[string]int
}

// NewSnapshot returns an empty, complete snapshot of provider.
func NewSnapshot(provider string) *Snapshot {
	return &Snapshot{Provider: provider, Complete: true, Calls: map[string]int{}}
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
