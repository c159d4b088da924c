package diff

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// provisioned gives m the status Cluster API's Machine controller writes for a provisioned Machine
// (conditions, the v1beta1 ones kept for compatibility, addresses, the Node's system information),
// keeping the phase and Node m has; and gives infra an AWSMachine's status as CAPA writes it.
func provisioned(t testing.TB, m, infra *unstructured.Unstructured) {
	t.Helper()
	at := metav1.NewTime(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC))
	var conditions []metav1.Condition
	var v1beta1 clusterv1.Conditions
	for _, c := range []string{clusterv1.AvailableCondition, clusterv1.ReadyCondition, clusterv1.MachineUpToDateCondition,
		clusterv1.MachineBootstrapConfigReadyCondition, clusterv1.MachineInfrastructureReadyCondition,
		clusterv1.MachineNodeReadyCondition, clusterv1.MachineNodeHealthyCondition, clusterv1.MachineDeletingCondition,
		clusterv1.PausedCondition, clusterv1.MachineHealthCheckSucceededCondition, clusterv1.MachineUpdatingCondition} {
		conditions = append(conditions, metav1.Condition{Type: c, Status: metav1.ConditionTrue, ObservedGeneration: 2,
			LastTransitionTime: at, Reason: c, Message: "* Node " + m.GetName() + ": kubelet is posting ready status"})
		v1beta1 = append(v1beta1, clusterv1.Condition{Type: clusterv1.ConditionType(c), Status: corev1.ConditionTrue, LastTransitionTime: at})
	}
	status := clusterv1.MachineStatus{
		Conditions:     conditions,
		Initialization: clusterv1.MachineInitializationStatus{InfrastructureProvisioned: ptr.To(true), BootstrapDataSecretCreated: ptr.To(true)},
		NodeInfo: &corev1.NodeSystemInfo{MachineID: "ec2f0c1d2e3f4a5b6c7d8e9f0a1b2c3d", SystemUUID: "ec2f0c1d-2e3f-4a5b-6c7d-8e9f0a1b2c3d",
			BootID: "4f6c2a1e-7d3b-4c9a-8e5f-1a2b3c4d5e6f", KernelVersion: "6.1.115-126.197.amzn2023.x86_64", OSImage: "Amazon Linux 2023.6.20241212",
			ContainerRuntimeVersion: "containerd://1.7.23", KubeletVersion: "v1.31.4", KubeProxyVersion: "v1.31.4", OperatingSystem: "linux", Architecture: "amd64"},
		LastUpdated: at,
		Addresses: clusterv1.MachineAddresses{{Type: clusterv1.MachineInternalIP, Address: "10.0.12.34"},
			{Type: clusterv1.MachineInternalDNS, Address: "ip-10-0-12-34.eu-west-1.compute.internal"},
			{Type: clusterv1.MachineHostName, Address: "ip-10-0-12-34.eu-west-1.compute.internal"}},
		FailureDomain:          "eu-west-1a",
		CertificatesExpiryDate: at,
		ObservedGeneration:     2,
		Deprecated:             &clusterv1.MachineDeprecatedStatus{V1Beta1: &clusterv1.MachineV1Beta1DeprecatedStatus{Conditions: v1beta1}},
	}
	u, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(&status)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := m.Object["status"].(map[string]any)
	for _, f := range []string{"phase", "nodeRef"} {
		delete(u, f)
		if v, ok := old[f]; ok {
			u[f] = v
		}
	}
	m.Object["status"] = u
	if infra != nil {
		infra.Object["status"] = map[string]any{"ready": true, "instanceState": "running",
			"addresses":  []any{map[string]any{"type": "InternalIP", "address": "10.0.12.34"}, map[string]any{"type": "InternalDNS", "address": "ip-10-0-12-34.eu-west-1.compute.internal"}},
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-20T08:00:00Z"}, map[string]any{"type": "InstanceReady", "status": "True", "lastTransitionTime": "2026-11-20T08:00:00Z"}, map[string]any{"type": "SecurityGroupsReady", "status": "True", "lastTransitionTime": "2026-11-20T08:00:00Z"}},
		}
	}
}

// TestTheCacheKeepsWhatTheCloudComparisonReads: Machines and their AWSMachines as the daemon's
// cache holds them (TrimCached) are judged and planned exactly as whole ones, and weigh a fraction.
func TestTheCacheKeepsWhatTheCloudComparisonReads(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	whole := cloudInput(now)
	for _, cm := range whole.Machines {
		provisioned(t, cm.Machine, cm.Infra)
		// Owned by a MachineSet, as a MachineDeployment's Machines are: deleting one replaces it.
		cm.Machine.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "MachineSet", Name: "prod-md-0-7f9c4", Controller: ptr.To(true)}})
		cm.Machine.SetLabels(map[string]string{LabelClusterName: "prod", LabelDeploymentName: "prod-md-0"})
	}
	whole.Machines[0].Machine.SetDeletionTimestamp(&metav1.Time{Time: now})
	trimmed := cloudInput(now)
	trimmed.Machines = nil
	var before, after int
	for _, cm := range whole.Machines {
		m := cm.Machine.DeepCopy()
		before += size(t, m)
		if !TrimCached(m) {
			t.Errorf("nothing trimmed of Machine %s", m.GetName())
		}
		after += size(t, m)
		var infra *unstructured.Unstructured
		if cm.Infra != nil {
			infra = cm.Infra.DeepCopy()
			before += size(t, infra)
			if !TrimCached(infra) {
				t.Error("nothing trimmed of an AWSMachine")
			}
			after += size(t, infra)
		}
		trimmed.Machines = append(trimmed.Machines, CloudMachine{Machine: m, Infra: infra})
	}
	if got, want := judged(CloudFindings(trimmed)), judged(CloudFindings(whole)); got != want {
		t.Errorf("findings over the cached Machines:\n%s\nover whole ones:\n%s", got, want)
	}
	var findings []Finding
	for _, f := range CloudFindings(whole) {
		if f.Class != ClassUnmanagedInstance {
			findings = append(findings, f)
		}
	}
	if len(findings) == 0 {
		t.Fatal("no finding to plan; the test proves nothing")
	}
	plan := func(in CloudInput) string {
		var machines []*unstructured.Unstructured
		for _, cm := range in.Machines {
			machines = append(machines, cm.Machine)
		}
		p := PlanReplacements(findings, ReplaceInput{Machines: machines, Budget: 2, Policy: Policy{Mode: ModeCorrect}, Breaker: &Breaker{MaxCount: -1}})
		out := judged(p.Findings)
		for _, r := range p.Replacements {
			out += fmt.Sprintf("replace %s by %s\n", r.Machine.GetName(), r.Method)
		}
		return out
	}
	if got, want := plan(trimmed), plan(whole); got != want {
		t.Errorf("replacements over the cached Machines:\n%s\nover whole ones:\n%s", got, want)
	} else if !strings.Contains(got, "replace ") {
		t.Errorf("no replacement planned; the test proves nothing:\n%s", got)
	}
	if after*3 > before {
		t.Errorf("the cached Machines and AWSMachines weigh %d bytes of JSON, whole %d: less than a third was trimmed", after, before)
	}
	t.Logf("%d Machines and AWSMachines: %d bytes of JSON whole, %d cached", len(whole.Machines), before, after)

	t.Run("other kinds are kept whole", func(t *testing.T) {
		for _, u := range []*unstructured.Unstructured{
			obj(map[string]any{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment", "status": map[string]any{"replicas": int64(3), "conditions": []any{}}}),
			obj(map[string]any{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster", "status": map[string]any{"phase": "Provisioned", "conditions": []any{}}}),
			obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "AWSCluster", "status": map[string]any{"ready": true}}),
			obj(map[string]any{"apiVersion": "example.com/v1", "kind": "Machine", "status": map[string]any{"conditions": []any{}}}),
		} {
			want := fmt.Sprint(u.Object)
			if TrimCached(u) || fmt.Sprint(u.Object) != want {
				t.Errorf("%s %s was trimmed: %v", u.GetAPIVersion(), u.GetKind(), u.Object)
			}
		}
	})
}

// judged is what a user sees of findings: each one's object, class, fields, instance and action.
func judged(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		id := ""
		if f.Instance != nil {
			id = f.Instance.ID
		}
		fmt.Fprintf(&b, "%s %s %v %s %s %s %s\n", f.Object, f.Class, f.Fields, id, f.Action, f.Reason, f.Blocker)
	}
	return b.String()
}

func size(t testing.TB, u *unstructured.Unstructured) int {
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// BenchmarkCachedMachines measures the heap 60,000 provisioned Machines and their AWSMachines
// hold, decoded as the daemon's cache decodes them, whole and as TrimCached leaves them.
func BenchmarkCachedMachines(b *testing.B) {
	const n = 60000
	m := machine("m", "aws:///eu-west-1a/i-0123456789abcdef0", "Running", map[string]string{LabelClusterName: "prod", LabelDeploymentName: "prod-md-0"})
	m.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "MachineSet", Name: "prod-md-0-7f9c4", UID: "8f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b", Controller: ptr.To(true)}})
	m.SetUID("1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809")
	m.SetResourceVersion("123456")
	inf := awsMachine("m6i.large")
	provisioned(b, m, inf)
	objects := [][]byte{}
	for _, u := range []*unstructured.Unstructured{m, inf} {
		js, err := json.Marshal(u.Object)
		if err != nil {
			b.Fatal(err)
		}
		objects = append(objects, js)
	}
	for _, trim := range []bool{false, true} {
		b.Run(map[bool]string{false: "whole", true: "trimmed"}[trim], func(b *testing.B) {
			var held []*unstructured.Unstructured
			var heap float64
			for range b.N {
				held = make([]*unstructured.Unstructured, 0, 2*n)
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				for range n {
					for _, js := range objects {
						u := &unstructured.Unstructured{}
						if err := u.UnmarshalJSON(js); err != nil {
							b.Fatal(err)
						}
						if trim {
							TrimCached(u)
						}
						held = append(held, u)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				heap = float64(m1.HeapAlloc-m0.HeapAlloc) / (1 << 20)
			}
			runtime.KeepAlive(held)
			b.ReportMetric(heap, "MiB/60k-machines")
		})
	}
}
