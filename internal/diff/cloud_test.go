package diff

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/infra"
)

// machine is a Machine of cluster fleet/prod; a Running one has a Node.
func machine(name, providerID, phase string, labels map[string]string) *unstructured.Unstructured {
	status := map[string]any{"phase": phase}
	if phase == "Running" {
		status["nodeRef"] = map[string]any{"name": name}
	}
	m := obj(map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
		"metadata": map[string]any{"name": name, "namespace": "fleet"},
		"spec":     map[string]any{"clusterName": "prod", "providerID": providerID},
		"status":   status,
	})
	m.SetLabels(labels)
	return m
}

func awsMachine(instanceType string) *unstructured.Unstructured {
	return obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "AWSMachine",
		"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"instanceType": instanceType}})
}

// cloudInput is a cluster's Machines and its instances in every state CloudFindings tells apart,
// at now.
func cloudInput(now time.Time) CloudInput {
	inst := func(id, state, typ string, age time.Duration) infra.Instance {
		return infra.Instance{Provider: infra.ProviderAWS, ID: id, ProviderID: "aws:///a/" + id, Cluster: "fleet/prod", State: state, Type: typ, LaunchTime: now.Add(-age)}
	}
	return CloudInput{
		Snapshots: map[string]*infra.Snapshot{infra.ProviderAWS: {Complete: true, Instances: []infra.Instance{
			inst("i-00000001", infra.StateRunning, "m5.large", time.Hour),
			inst("i-00000002", infra.StateTerminated, "m5.large", time.Hour),
			inst("i-00000003", infra.StateStopped, "m5.large", time.Hour),
			inst("i-00000004", infra.StateRunning, "m5.4xlarge", time.Hour),
			inst("i-00000005", infra.StateStopped, "m5.large", time.Hour),
			inst("i-0000000a", infra.StateRunning, "m5.large", time.Hour),   // unreferenced, old
			inst("i-0000000b", infra.StateRunning, "m5.large", time.Minute), // unreferenced, provisioning
		}}},
		Machines: []CloudMachine{
			{Machine: machine("ok", "aws:///a/i-00000001", "Running", nil), Infra: awsMachine("m5.large")},
			{Machine: machine("terminated", "aws:///a/i-00000002", "Running", nil), Infra: awsMachine("m5.large")},
			{Machine: machine("stopped", "aws:///a/i-00000003", "Running", nil), Infra: awsMachine("m5.large")},
			{Machine: machine("resized", "aws:////i-00000004", "Running", nil), Infra: awsMachine("m5.large")},
			{Machine: machine("stopped-while-provisioning", "aws:///a/i-00000005", "Provisioning", nil), Infra: awsMachine("m5.large")},
			{Machine: machine("gone", "aws:///a/i-00000009", "Running", nil), Infra: awsMachine("m5.large")},
			{Machine: machine("unprovisioned", "", "Pending", nil)},
		},
		Clusters: map[string]bool{"fleet/prod": true}, Now: now, Grace: 10 * time.Minute,
	}
}

func TestCloudFindings(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	in := cloudInput(now)
	got := map[string]Class{}
	for _, f := range CloudFindings(in) {
		name := f.Object.Name
		if f.Class == ClassUnmanagedInstance {
			name = f.Instance.ID
		}
		got[name] = f.Class
	}
	want := map[string]Class{
		"terminated": ClassInstanceMissing, "gone": ClassInstanceMissing, "stopped": ClassInstanceStopped,
		"resized": ClassInstanceMismatch, "i-0000000a": ClassUnmanagedInstance,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("findings = %v, want %v", got, want)
	}

	t.Run("a clock ten minutes off judges every Machine alike", func(t *testing.T) {
		// Whether a Machine's instance is missing or stopped follows the Machine's state (Running,
		// with a Node), never driftd's clock against the cloud's: a skew can move only the report of
		// an instance no Machine references, which is never acted on.
		for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
			in := in
			in.Now = now.Add(skew)
			machines := 0
			for _, f := range CloudFindings(in) {
				if f.Class != ClassUnmanagedInstance {
					machines++
				}
				if f.Class == ClassUnmanagedInstance {
					if f.Action != ActionReport {
						t.Errorf("skew %s: %s is %s, want a report", skew, f.Instance.ID, f.Action)
					}
					continue
				}
				if want[f.Object.Name] != f.Class {
					t.Errorf("skew %s: %s judged %s, want %q as with the right clock", skew, f.Object.Name, f.Class, want[f.Object.Name])
				}
			}
			if machines != len(want)-1 {
				t.Errorf("skew %s: %d Machines judged, want %d as with the right clock", skew, machines, len(want)-1)
			}
		}
	})
	t.Run("no snapshot, no judgement", func(t *testing.T) {
		in := in
		in.Snapshots = map[string]*infra.Snapshot{}
		if f := CloudFindings(in); len(f) != 0 {
			t.Errorf("findings without a snapshot: %+v", f)
		}
	})
	t.Run("a cluster the snapshot could not read is not judged", func(t *testing.T) {
		in := in
		snap := *in.Snapshots[infra.ProviderAWS]
		snap.Unavailable = map[string]error{"fleet/prod": fmt.Errorf("AssumeRole denied")}
		in.Snapshots = map[string]*infra.Snapshot{infra.ProviderAWS: &snap}
		if f := CloudFindings(in); len(f) != 0 {
			t.Errorf("findings for an unavailable cluster: %+v", f)
		}
	})
}

// TestEndpointProviderFindings: an inventory endpoint's instances are judged like AWS's — matched on
// the providerID's scheme and rest, type and image compared at the fields its configuration
// names, its node pools compared with MachinePools of the same name.
func TestEndpointProviderFindings(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	inst := func(id, state, typ string) infra.Instance {
		return infra.Instance{Provider: "in-house", ID: id, ProviderID: "in-house://" + id, Cluster: "fleet/prod", State: state, Type: typ,
			Image: "img-7", LaunchTime: now.Add(-time.Hour)}
	}
	ihm := func(flavor string) *unstructured.Unstructured {
		return obj(map[string]any{"apiVersion": "infrastructure.in-house.example/v1", "kind": "InHouseMachine",
			"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"flavor": flavor, "image": map[string]any{"id": "img-7"}}})
	}
	mp := obj(map[string]any{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachinePool",
		"metadata": map[string]any{"name": "pool-a", "namespace": "fleet"}, "spec": map[string]any{"clusterName": "prod", "replicas": int64(3)}})
	ihp := obj(map[string]any{"apiVersion": "infrastructure.in-house.example/v1", "kind": "InHouseMachinePool",
		"metadata": map[string]any{"name": "pool-a", "namespace": "fleet"}, "spec": map[string]any{"minSize": int64(1), "maxSize": int64(5)}})
	in := CloudInput{
		Snapshots: map[string]*infra.Snapshot{"in-house": {Provider: "in-house", Complete: true, Instances: []infra.Instance{
			inst("a", infra.StateRunning, "small"), inst("b", infra.StateStopped, "small"), inst("c", infra.StateRunning, "large"),
		}, Pools: []infra.NodePool{{Provider: "in-house", Name: "pool-a", Cluster: "fleet/prod", Desired: 2, Min: 1, Max: 5}}}},
		Machines: []CloudMachine{
			{Machine: machine("ok", "in-house://a", "Running", nil), Infra: ihm("small")},
			{Machine: machine("stopped", "in-house://b", "Running", nil), Infra: ihm("small")},
			{Machine: machine("resized", "in-house://c", "Running", nil), Infra: ihm("small")},
			{Machine: machine("gone", "in-house://d", "Running", nil), Infra: ihm("small")},
			{Machine: machine("elsewhere", "other://d", "Running", nil), Infra: ihm("small")},
		},
		Pools:    []CloudPool{{MachinePool: mp, Infra: ihp}},
		Clusters: map[string]bool{"fleet/prod": true}, Now: now, Grace: 10 * time.Minute,
		MachineFields: map[string]MachineFields{"in-house": {Type: []string{"spec", "flavor"}, Image: []string{"spec", "image", "id"}}},
	}
	got := map[string]string{}
	for _, f := range CloudFindings(in) {
		desc := string(f.Class)
		for _, fd := range f.Fields {
			desc += fmt.Sprintf(" %s %v→%v", fd.Path, fd.Live, fd.Desired)
		}
		got[f.Object.Name] = desc
	}
	want := map[string]string{
		"stopped": "InstanceStopped", "gone": "InstanceMissing",
		"resized": "InstanceMismatch /spec/flavor large→small", "pool-a": "NodePoolMismatch /spec/replicas 2→3",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("findings = %v, want %v", got, want)
	}
	in.MachineFields = nil
	for _, f := range CloudFindings(in) {
		if f.Class == ClassInstanceMismatch {
			t.Errorf("compared %v without machineFields configured", f.Fields)
		}
	}
}

// TestAMachineIsMissingOnlyWhenNothingElseExplainsIt: a Machine still provisioning, or without a
// Node, may have an instance the cloud does not list yet; a VM on a vCenter where a VM could not be
// read may be that one; a VM in a folder the identity cannot see is unknown.
func TestAMachineIsMissingOnlyWhenNothingElseExplainsIt(t *testing.T) {
	vsm := func(folder string) *unstructured.Unstructured {
		return obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "VSphereMachine",
			"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"server": "vc1", "folder": folder}})
	}
	noNode := machine("no-node", "vsphere://42000000-0000-0000-0000-00000000000e", "Running", nil)
	unstructured.RemoveNestedField(noNode.Object, "status", "nodeRef")
	tests := []struct {
		name    string
		m       CloudMachine
		unknown int
		visible map[string]bool
		missing bool
	}{
		{"running with a node, folder visible", CloudMachine{Machine: machine("a", "vsphere://42000000-0000-0000-0000-00000000000a", "Running", nil), Infra: vsm("/DC0/vm/prod")}, 0, map[string]bool{"/DC0/vm/prod": true}, true},
		{"provisioning", CloudMachine{Machine: machine("p", "vsphere://42000000-0000-0000-0000-00000000000b", "Provisioning", nil), Infra: vsm("/DC0/vm/prod")}, 0, map[string]bool{"/DC0/vm/prod": true}, false},
		{"no node yet", CloudMachine{Machine: noNode, Infra: vsm("/DC0/vm/prod")}, 0, map[string]bool{"/DC0/vm/prod": true}, false},
		{"an unreadable VM on its vCenter", CloudMachine{Machine: machine("u", "vsphere://42000000-0000-0000-0000-00000000000c", "Running", nil), Infra: vsm("/DC0/vm/prod")}, 1, map[string]bool{"/DC0/vm/prod": true}, false},
		{"a folder the identity cannot see", CloudMachine{Machine: machine("h", "vsphere://42000000-0000-0000-0000-00000000000d", "Running", nil), Infra: vsm("/DC0/vm/tenant-b")}, 0, map[string]bool{"/DC0/vm/prod": true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := infra.NewSnapshot(infra.ProviderVSphere)
			snap.Unknown["vc1"] = tt.unknown
			snap.Folders["fleet/prod"] = tt.visible
			fs := CloudFindings(CloudInput{Snapshots: map[string]*infra.Snapshot{infra.ProviderVSphere: snap},
				Machines: []CloudMachine{tt.m}, Clusters: map[string]bool{"fleet/prod": true}, Now: time.Now(), Grace: time.Minute})
			if got := len(fs) == 1 && fs[0].Class == ClassInstanceMissing; got != tt.missing {
				t.Errorf("InstanceMissing: %v, want %v (%+v)", got, tt.missing, fs)
			}
		})
	}
}

func TestPlanReplacements(t *testing.T) {
	owned := func(name string, labels map[string]string) *unstructured.Unstructured {
		m := machine(name, "aws:///a/i-1", "Running", labels)
		m.SetOwnerReferences([]metav1.OwnerReference{{Kind: "MachineSet", Name: "md-0-abc", APIVersion: "cluster.x-k8s.io/v1beta2"}})
		return m
	}
	md := map[string]string{LabelDeploymentName: "md-0", "pool": "md-0"}
	m1, m2 := owned("m1", md), owned("m2", md)
	cp := machine("cp1", "aws:///a/i-2", "Running", map[string]string{LabelControlPlane: "", LabelControlPlaneName: "kcp"})
	mhc := obj(map[string]any{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineHealthCheck",
		"metadata": map[string]any{"name": "md-0", "namespace": "fleet"},
		"spec":     map[string]any{"clusterName": "prod", "selector": map[string]any{"matchLabels": map[string]any{"pool": "md-0"}}}})
	finding := func(m *unstructured.Unstructured) Finding {
		return Finding{Layer: LayerCloud, Class: ClassInstanceMissing, Object: RefOf(m)}
	}
	tests := []struct {
		name    string
		in      ReplaceInput
		actions []Action
		methods []ReplaceMethod
	}{
		// All three Machines look missing here, which would trip the breaker (TestBreaker...):
		// these cases switch it off to look at budgets and methods alone.
		{"without a health check: delete one, the second waits", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, Policy: Policy{Mode: ModeCorrect}, Breaker: &Breaker{MaxCount: -1}},
			[]Action{ActionReplace, ActionBlocked, ActionBlocked}, []ReplaceMethod{ReplaceDelete}},
		{"with a health check: remediate", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, MHCs: []*unstructured.Unstructured{mhc}, Budget: 2, Policy: Policy{Mode: ModeCorrect}, Breaker: &Breaker{MaxCount: -1}},
			[]Action{ActionReplace, ActionReplace, ActionBlocked}, []ReplaceMethod{ReplaceRemediate, ReplaceRemediate}},
		{"detect mode", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, Policy: Policy{Mode: ModeDetect}},
			[]Action{ActionReport, ActionReport, ActionReport}, nil},
		{"paused cluster", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, Paused: map[string]bool{"fleet/prod": true}, Policy: Policy{Mode: ModeCorrect}},
			[]Action{ActionBlocked, ActionBlocked, ActionBlocked}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := PlanReplacements([]Finding{finding(m1), finding(m2), finding(cp)}, tt.in)
			findings, repl := plan.Findings, plan.Replacements
			var actions []Action
			for _, f := range findings {
				actions = append(actions, f.Action)
			}
			var methods []ReplaceMethod
			for _, r := range repl {
				methods = append(methods, r.Method)
			}
			if fmt.Sprint(actions) != fmt.Sprint(tt.actions) || fmt.Sprint(methods) != fmt.Sprint(tt.methods) {
				t.Errorf("actions %v methods %v, want %v %v (reasons: %v)", actions, methods, tt.actions, tt.methods, reasons(findings))
			}
		})
	}
}

func reasons(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Reason)
	}
	return out
}

// BenchmarkCloudFindings matches 10,000 Machines to 10,000 instances.
func BenchmarkCloudFindings(b *testing.B) {
	const n = 10000
	snap := &infra.Snapshot{Complete: true}
	in := CloudInput{Snapshots: map[string]*infra.Snapshot{infra.ProviderAWS: snap}, Clusters: map[string]bool{"fleet/prod": true}, Now: time.Now(), Grace: time.Minute}
	for i := range n {
		id := fmt.Sprintf("i-%017x", i)
		snap.Instances = append(snap.Instances, infra.Instance{Provider: infra.ProviderAWS, ID: id, Cluster: "fleet/prod", State: infra.StateRunning, Type: "m5.large"})
		in.Machines = append(in.Machines, CloudMachine{Machine: machine(fmt.Sprintf("m%d", i), "aws:///a/"+id, "Running", nil), Infra: awsMachine("m5.large")})
	}
	b.ResetTimer()
	for range b.N {
		if f := CloudFindings(in); len(f) != 0 {
			b.Fatalf("%d findings", len(f))
		}
	}
}
