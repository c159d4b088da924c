package diff

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func class(t *testing.T, worker string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	y := `apiVersion: cluster.x-k8s.io/v1beta2
kind: ClusterClass
metadata: {name: in-memory, namespace: fleet}
spec:
  controlPlane:
    machineInfrastructure:
      templateRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta2, kind: DevMachineTemplate, name: cp}
    templateRef: {apiVersion: controlplane.cluster.x-k8s.io/v1beta2, kind: KubeadmControlPlaneTemplate, name: cp}
  workers:
    machineDeployments:
    - class: default-worker
      bootstrap:
        templateRef: {apiVersion: bootstrap.cluster.x-k8s.io/v1beta2, kind: KubeadmConfigTemplate, name: worker}
      infrastructure:
        templateRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta2, kind: DevMachineTemplate, name: ` + worker + `}
`
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestClassRollout(t *testing.T) {
	users := []ClassUser{
		{Cluster: "fleet/cc1", Machines: 1}, {Cluster: "fleet/cc1", Worker: "md-0", Class: "default-worker", Machines: 2},
		{Cluster: "fleet/cc2", Machines: 3}, {Cluster: "fleet/cc2", Worker: "md-0", Class: "default-worker", Machines: 1},
		{Cluster: "fleet/cc2", Worker: "md-1", Class: "other", Machines: 5},
	}
	changes := ClassTemplateChanges(class(t, "worker"), class(t, "worker-v2"))
	if len(changes) != 1 || changes[0].Class != "default-worker" || changes[0].Old != "DevMachineTemplate/worker" || changes[0].New != "DevMachineTemplate/worker-v2" {
		t.Fatalf("changes = %+v, want the worker class's infrastructure template", changes)
	}
	spec := func(d string) any {
		return map[string]any{"template": map[string]any{"spec": map[string]any{"startup": d}}}
	}

	t.Run("another spec: both clusters' workers roll", func(t *testing.T) {
		c := changes[0]
		c.OldSpec, c.NewSpec = spec("2s"), spec("3s")
		r := ClassRollout([]TemplateChange{c}, users, false)
		if r.Effect != EffectRoll || r.Machines != 3 || strings.Join(r.Clusters, ",") != "fleet/cc1,fleet/cc2" || r.ControlPlaneMachines != 0 {
			t.Errorf("rollout = %+v, want a roll of 3 worker Machines in cc1 and cc2", r)
		}
	})
	t.Run("the same spec under a new name: nothing rolls", func(t *testing.T) {
		c := changes[0]
		c.OldSpec, c.NewSpec = spec("2s"), spec("2s")
		r := ClassRollout([]TemplateChange{c}, users, false)
		if r.Effect != EffectNone || r.Machines != 0 || !strings.Contains(r.Reason, "patches the clusters' clones in place") {
			t.Errorf("rollout = %+v, want none: clones patched in place", r)
		}
	})
	t.Run("the control plane's machine template: every control plane rolls", func(t *testing.T) {
		cp := class(t, "worker")
		_ = unstructured.SetNestedField(cp.Object, "cp-v2", "spec", "controlPlane", "machineInfrastructure", "templateRef", "name")
		ch := ClassTemplateChanges(class(t, "worker"), cp)
		ch[0].OldSpec, ch[0].NewSpec = spec("2s"), spec("3s")
		r := ClassRollout(ch, users, false)
		if r.Effect != EffectRoll || r.Machines != 4 || r.ControlPlaneMachines != 4 {
			t.Errorf("rollout = %+v, want a roll of the 4 control-plane Machines", r)
		}
	})
	t.Run("patches or an unreadable template: unknown", func(t *testing.T) {
		c := changes[0]
		c.OldSpec, c.NewSpec = spec("2s"), spec("3s")
		if r := ClassRollout([]TemplateChange{c}, users, true); r.Effect != EffectUnknown {
			t.Errorf("with patches: %+v, want unknown", r)
		}
		c.Missing = true
		if r := ClassRollout([]TemplateChange{c}, users, false); r.Effect != EffectUnknown {
			t.Errorf("a template missing: %+v, want unknown", r)
		}
	})
}
