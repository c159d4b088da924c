package diff

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/infra"
)

func machine(name, providerID, phase string, labels map[string]string) *unstructured.Unstructured {
	m := obj(map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
		"metadata": map[string]any{"name": name, "namespace": "fleet"},
		"spec":     map[string]any{"clusterName": "prod", "providerID": providerID},
		"status":   map[string]any{"phase": phase},
	})
	m.SetLabels(labels)
	return m
}

func awsMachine(instanceType string) *unstructured.Unstructured {
	return obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "AWSMachine",
		"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"instanceType": instanceType}})
}

func TestCloudFindings(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	inst := func(id, state, typ string, age time.Duration) infra.Instance {
		return infra.Instance{Provider: infra.ProviderAWS, ID: id, ProviderID: "aws:///a/" + id, Cluster: "prod", State: state, Type: typ, LaunchTime: now.Add(-age)}
	}
	in := CloudInput{
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
		Clusters: map[string]bool{"prod": true}, Now: now, Grace: 10 * time.Minute,
	}
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

	t.Run("no snapshot, no judgement", func(t *testing.T) {
		in := in
		in.Snapshots = map[string]*infra.Snapshot{}
		if f := CloudFindings(in); len(f) != 0 {
			t.Errorf("findings without a snapshot: %+v", f)
		}
	})
}

func TestDecideMachines(t *testing.T) {
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
		{"without a health check: delete one, the second waits", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, Policy: Policy{Mode: ModeCorrect}},
			[]Action{ActionReplace, ActionBlocked, ActionBlocked}, []ReplaceMethod{ReplaceDelete}},
		{"with a health check: remediate", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, MHCs: []*unstructured.Unstructured{mhc}, Budget: 2, Policy: Policy{Mode: ModeCorrect}},
			[]Action{ActionReplace, ActionReplace, ActionBlocked}, []ReplaceMethod{ReplaceRemediate, ReplaceRemediate}},
		{"detect mode", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, Policy: Policy{Mode: ModeDetect}},
			[]Action{ActionReport, ActionReport, ActionReport}, nil},
		{"paused cluster", ReplaceInput{Machines: []*unstructured.Unstructured{m1, m2, cp}, Paused: map[string]bool{"fleet/prod": true}, Policy: Policy{Mode: ModeCorrect}},
			[]Action{ActionBlocked, ActionBlocked, ActionBlocked}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			findings, repl := DecideMachines([]Finding{finding(m1), finding(m2), finding(cp)}, tt.in)
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
	in := CloudInput{Snapshots: map[string]*infra.Snapshot{infra.ProviderAWS: snap}, Clusters: map[string]bool{"prod": true}, Now: time.Now(), Grace: time.Minute}
	for i := range n {
		id := fmt.Sprintf("i-%017x", i)
		snap.Instances = append(snap.Instances, infra.Instance{Provider: infra.ProviderAWS, ID: id, Cluster: "prod", State: infra.StateRunning, Type: "m5.large"})
		in.Machines = append(in.Machines, CloudMachine{Machine: machine(fmt.Sprintf("m%d", i), "aws:///a/"+id, "Running", nil), Infra: awsMachine("m5.large")})
	}
	b.ResetTimer()
	for range b.N {
		if f := CloudFindings(in); len(f) != 0 {
			b.Fatalf("%d findings", len(f))
		}
	}
}
