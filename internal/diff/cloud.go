package diff

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/infra"
)

// Cloud drift classes.
const (
	// ClassInstanceMissing: a Machine's providerID names an instance that is gone or terminated.
	ClassInstanceMissing Class = "InstanceMissing"
	// ClassInstanceStopped: the instance is stopped or powered off while the Machine counts as running.
	ClassInstanceStopped Class = "InstanceStopped"
	// ClassInstanceMismatch: instance type, CPU, memory or image differ from the infrastructure spec.
	ClassInstanceMismatch Class = "InstanceMismatch"
	// ClassUnmanagedInstance: tagged for or placed in a cluster, referenced by no Machine, older
	// than the grace period.
	ClassUnmanagedInstance Class = "UnmanagedInstance"
	// ClassNodePoolMismatch: an Auto Scaling group's desired/min/max differ from its MachinePool.
	ClassNodePoolMismatch Class = "NodePoolMismatch"
)

// CloudMachine is a live Machine with its infrastructure machine (AWSMachine, VSphereMachine).
type CloudMachine struct {
	Machine *unstructured.Unstructured
	// Infra is the infrastructure machine; nil when it cannot be read.
	Infra *unstructured.Unstructured
}

// ClusterKey is a cluster's "namespace/name", the way the cloud layer names clusters.
func ClusterKey(namespace, name string) string { return namespace + "/" + name }

// clusterOf is the key of the cluster a Machine or MachinePool belongs to.
func clusterOf(o *unstructured.Unstructured) string {
	name, _, _ := unstructured.NestedString(o.Object, "spec", "clusterName")
	return ClusterKey(o.GetNamespace(), name)
}

// CloudPool is a live MachinePool with its infrastructure pool (AWSMachinePool).
type CloudPool struct {
	MachinePool *unstructured.Unstructured
	Infra       *unstructured.Unstructured
}

// CloudInput is everything a cloud comparison looks at.
type CloudInput struct {
	// Snapshots are the answers, by provider. A provider whose snapshot failed is absent: none of
	// its machines is judged; a cluster a snapshot lists as unavailable is not judged either.
	Snapshots map[string]*infra.Snapshot
	// Machines are the live Machines of the clusters in scope.
	Machines []CloudMachine
	// Pools are the live MachinePools of the clusters in scope.
	Pools []CloudPool
	// Clusters are the clusters in scope, by key ("namespace/name"): only their instances can be
	// unmanaged.
	Clusters map[string]bool
	// Now and Grace: an instance younger than Grace is still being provisioned.
	Now   time.Time
	Grace time.Duration
	// MachineFields say, by inventory endpoint provider, which fields of its infrastructure
	// machines an instance's type and image are compared with.
	MachineFields map[string]MachineFields
}

// MachineFields are the paths, in an infrastructure machine, of what an inventory endpoint reports
// as an instance's type and image; an empty path compares nothing.
type MachineFields struct {
	Type, Image []string
}

// CloudFindings compares Machines and MachinePools with the cloud. The findings have no action
// yet: PlanReplacements and the node-pool policy decide it.
//
// An instance is missing only when nothing else can explain its absence: its cluster's inventory
// was read completely with the cluster's own identity, the Machine is Running with a Node (a Machine
// still provisioning may have an instance an eventually consistent API does not list yet), no VM on
// its vCenter was unreadable, and its folder is one the identity can see.
func CloudFindings(in CloudInput) []Finding {
	var out []Finding
	referenced := map[string]bool{}       // provider/id
	index := map[string]*infra.Instance{} // provider/id, lower-cased: one pass, so matching stays linear
	for provider, snap := range in.Snapshots {
		for i := range snap.Instances {
			index[provider+"/"+strings.ToLower(snap.Instances[i].ID)] = &snap.Instances[i]
		}
	}
	for _, cm := range in.Machines {
		pid, _, _ := unstructured.NestedString(cm.Machine.Object, "spec", "providerID")
		if pid == "" {
			continue // not provisioned yet
		}
		provider, id, err := infra.InstanceKey(pid)
		if err != nil {
			continue
		}
		referenced[provider+"/"+strings.ToLower(id)] = true
		snap, ok := in.Snapshots[provider]
		if !ok {
			continue
		}
		key := clusterOf(cm.Machine)
		if _, unavailable := snap.Unavailable[key]; unavailable {
			continue
		}
		inst := index[provider+"/"+strings.ToLower(id)]
		cluster, _, _ := unstructured.NestedString(cm.Machine.Object, "spec", "clusterName")
		f := Finding{Layer: LayerCloud, Cluster: cluster, Object: RefOf(cm.Machine)}
		switch {
		case inst == nil || inst.State == infra.StateTerminated:
			if !mayBeMissing(cm, snap, key, inst) {
				continue
			}
			f.Class = ClassInstanceMissing
			f.Instance = &infra.Instance{Provider: provider, ID: id, ProviderID: pid, State: "absent"}
			if inst != nil {
				f.Instance = inst
			}
		case (inst.State == infra.StateStopped || inst.State == infra.StateStopping || inst.State == infra.StateSuspended) && machineRunning(cm.Machine):
			f.Class, f.Instance = ClassInstanceStopped, inst
		default:
			fields := mismatch(cm.Infra, inst, in.MachineFields[provider])
			if len(fields) == 0 {
				continue
			}
			f.Class, f.Instance, f.Fields = ClassInstanceMismatch, inst, fields
		}
		out = append(out, f)
	}
	for provider, snap := range in.Snapshots {
		for i := range snap.Instances {
			inst := &snap.Instances[i]
			if referenced[provider+"/"+strings.ToLower(inst.ID)] || inst.State == infra.StateTerminated || !in.Clusters[inst.Cluster] {
				continue
			}
			if _, unavailable := snap.Unavailable[inst.Cluster]; unavailable {
				continue
			}
			if inst.LaunchTime.IsZero() || in.Now.Sub(inst.LaunchTime) < in.Grace {
				continue // provisioning: its Machine may not carry the providerID yet
			}
			ns, name, _ := strings.Cut(inst.Cluster, "/")
			out = append(out, Finding{
				Layer: LayerCloud, Class: ClassUnmanagedInstance, Cluster: name,
				Object:   ObjectRef{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "Cluster", Namespace: ns, Name: name},
				Instance: inst, Action: ActionReport,
				Reason: fmt.Sprintf("no Machine references it; running for %s", in.Now.Sub(inst.LaunchTime).Round(time.Second)),
			})
		}
	}
	out = append(out, poolFindings(in)...)
	return out
}

// machineRunning reports whether a Machine counts as running (phase Running), so that a stopped
// instance under a Machine still being provisioned or deleted is not drift.
func machineRunning(m *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(m.Object, "status", "phase")
	return phase == "Running" && m.GetDeletionTimestamp() == nil
}

// hasNode reports whether a Machine has a Node.
func hasNode(m *unstructured.Unstructured) bool {
	name, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name")
	return name != ""
}

// mayBeMissing reports whether nothing but a gone instance explains that the snapshot lacks a
// Machine's instance (or lists it terminated).
func mayBeMissing(cm CloudMachine, snap *infra.Snapshot, cluster string, inst *infra.Instance) bool {
	if !machineRunning(cm.Machine) || !hasNode(cm.Machine) {
		return false // still provisioning: its instance may not be listed yet
	}
	if inst != nil {
		return true // listed, terminated
	}
	if cm.Infra == nil {
		return true
	}
	if server, _, _ := unstructured.NestedString(cm.Infra.Object, "spec", "server"); server != "" && snap.Unknown[server] > 0 {
		return false // a VM there could not be read: it may be this one
	}
	if folder, _, _ := unstructured.NestedString(cm.Infra.Object, "spec", "folder"); folder != "" && snap.Provider == infra.ProviderVSphere {
		if !infra.FolderVisible(folder, snap.Folders[cluster]) {
			return false // the identity cannot see where the VM lives
		}
	}
	return true
}

// mismatch compares an instance with the spec of its infrastructure machine.
func mismatch(infraMachine *unstructured.Unstructured, inst *infra.Instance, endpoint MachineFields) []Field {
	if infraMachine == nil {
		return nil
	}
	var fields []Field
	str := func(path ...string) string {
		s, _, _ := unstructured.NestedString(infraMachine.Object, path...)
		return s
	}
	num := func(path ...string) (int64, bool) {
		v, ok, _ := unstructured.NestedFieldNoCopy(infraMachine.Object, path...)
		n, isNum := number(v)
		return int64(n), ok && isNum
	}
	switch inst.Provider {
	case infra.ProviderAWS:
		if want := str("spec", "instanceType"); want != "" && inst.Type != "" && want != inst.Type {
			fields = append(fields, Field{Path: "/spec/instanceType", Desired: want, Live: inst.Type})
		}
		if want := str("spec", "ami", "id"); want != "" && inst.Image != "" && want != inst.Image {
			fields = append(fields, Field{Path: "/spec/ami/id", Desired: want, Live: inst.Image})
		}
	case infra.ProviderVSphere:
		if want, ok := num("spec", "numCPUs"); ok && want > 0 && int64(inst.CPUs) != want {
			fields = append(fields, Field{Path: "/spec/numCPUs", Desired: want, Live: int64(inst.CPUs)})
		}
		if want, ok := num("spec", "memoryMiB"); ok && want > 0 && inst.MemoryMiB != want {
			fields = append(fields, Field{Path: "/spec/memoryMiB", Desired: want, Live: inst.MemoryMiB})
		}
	default:
		for _, c := range []struct {
			path []string
			live string
		}{{endpoint.Type, inst.Type}, {endpoint.Image, inst.Image}} {
			if len(c.path) == 0 {
				continue
			}
			if want := str(c.path...); want != "" && c.live != "" && want != c.live {
				fields = append(fields, Field{Path: "/" + strings.Join(c.path, "/"), Desired: want, Live: c.live})
			}
		}
	}
	return fields
}

// poolFindings compares each MachinePool's node pool (the AWSMachinePool's Auto Scaling group,
// an inventory endpoint's pool of the same name) with the pool's sizes.
func poolFindings(in CloudInput) []Finding {
	var out []Finding
	for _, p := range in.Pools {
		if p.Infra == nil {
			continue
		}
		cluster, _, _ := unstructured.NestedString(p.MachinePool.Object, "spec", "clusterName")
		key := clusterOf(p.MachinePool)
		var group *infra.NodePool
		for _, snap := range in.Snapshots {
			if _, unavailable := snap.Unavailable[key]; unavailable {
				continue
			}
			for i := range snap.Pools {
				if snap.Pools[i].Name == p.Infra.GetName() && snap.Pools[i].Cluster == key {
					group = &snap.Pools[i]
				}
			}
		}
		if group == nil {
			continue
		}
		var fields []Field
		if !replicasManagedElsewhere(p.MachinePool) {
			if want, ok, _ := unstructured.NestedInt64(p.MachinePool.Object, "spec", "replicas"); ok && int64(group.Desired) != want {
				fields = append(fields, Field{Path: "/spec/replicas", Desired: want, Live: int64(group.Desired)})
			}
		}
		if want, ok, _ := unstructured.NestedInt64(p.Infra.Object, "spec", "minSize"); ok && int64(group.Min) != want {
			fields = append(fields, Field{Path: "/spec/minSize", Desired: want, Live: int64(group.Min)})
		}
		if want, ok, _ := unstructured.NestedInt64(p.Infra.Object, "spec", "maxSize"); ok && int64(group.Max) != want {
			fields = append(fields, Field{Path: "/spec/maxSize", Desired: want, Live: int64(group.Max)})
		}
		if len(fields) == 0 {
			continue
		}
		restore := &PoolSizes{Min: group.Min, Max: group.Max}
		for _, f := range fields {
			n := int32(f.Desired.(int64))
			switch f.Path {
			case "/spec/replicas":
				restore.Desired = &n
			case "/spec/minSize":
				restore.Min = n
			case "/spec/maxSize":
				restore.Max = n
			}
		}
		out = append(out, Finding{
			Layer: LayerCloud, Class: ClassNodePoolMismatch, Cluster: cluster, Object: RefOf(p.MachinePool),
			Fields: fields, Pool: group, Restore: restore,
		})
	}
	return out
}
