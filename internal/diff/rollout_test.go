package diff

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// md is a MachineDeployment of 3 replicas (3 Machines live) with edit applied to its YAML.
func md(t *testing.T, edit func(string) string) *unstructured.Unstructured {
	t.Helper()
	y := `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata: {name: prod-md-0, namespace: fleet}
spec:
  clusterName: prod
  replicas: 3
  selector: {matchLabels: {pool: md-0}}
  template:
    metadata:
      labels: {pool: md-0}
    spec:
      clusterName: prod
      version: v1.35.0
      bootstrap:
        configRef: {apiGroup: bootstrap.cluster.x-k8s.io, kind: KubeadmConfigTemplate, name: prod-md-0}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: prod-md-0}
status:
  replicas: 3
`
	if edit != nil {
		y = edit(y)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return u
}

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func TestMachineDeploymentRollout(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ages := []time.Time{now.Add(-48 * time.Hour), now.Add(-47 * time.Hour), now.Add(-time.Hour)}
	for _, tt := range []struct {
		name     string
		edit     func(string) string
		live     bool
		machines []time.Time
		effect   Effect
		count    int
		reason   string
	}{
		{"version", replace("version: v1.35.0", "version: v1.36.0"), true, ages, EffectRoll, 3, "spec.version v1.35.0, v1.36.0 required"},
		{"infrastructure template renamed", replace("AWSMachineTemplate, name: prod-md-0}", "AWSMachineTemplate, name: prod-md-0-v2}"), true, ages, EffectRoll, 3, "spec.infrastructureRef"},
		{"bootstrap template renamed", replace("KubeadmConfigTemplate, name: prod-md-0}", "KubeadmConfigTemplate, name: prod-md-0-v2}"), true, ages, EffectRoll, 3, "spec.bootstrap.configRef"},
		{"failure domain", replace("      version:", "      failureDomain: eu-west-1b\n      version:"), true, ages, EffectRoll, 3, "spec.failureDomain"},
		{"a label of the Machines", replace("labels: {pool: md-0}", "labels: {pool: md-0, team: a}"), true, ages, EffectInPlace, 3, "template.metadata.labels"},
		{"minReadySeconds and drain timeout", replace("      version:", "      minReadySeconds: 30\n      deletion: {nodeDrainTimeoutSeconds: 60}\n      version:"), true, ages, EffectInPlace, 3, "template.spec.minReadySeconds, template.spec.deletion.nodeDrainTimeoutSeconds"},
		{"replicas up", replace("replicas: 3\n  selector", "replicas: 5\n  selector"), true, ages, EffectScale, 2, "creates 2"},
		{"replicas down", replace("replicas: 3\n  selector", "replicas: 1\n  selector"), true, ages, EffectScale, 2, "deletes 2"},
		{"version and replicas", func(s string) string {
			return replace("replicas: 3\n  selector", "replicas: 5\n  selector")(replace("version: v1.35.0", "version: v1.36.0")(s))
		}, true, ages, EffectRoll, 3, "and scales: spec.replicas 3 → 5"},
		{"rollout.after ahead", replace("  clusterName: prod\n  replicas", "  rollout: {after: \"2026-12-04T00:00:00Z\"}\n  clusterName: prod\n  replicas"), true, ages, EffectRoll, 3, "once it passes"},
		{"rollout.after passed: the Machines older than it", replace("  clusterName: prod\n  replicas", "  rollout: {after: \"2026-12-02T12:00:00Z\"}\n  clusterName: prod\n  replicas"), true, ages, EffectRoll, 2, "the 2 Machines created before it"},
		{"rollout.after passed, before every Machine", replace("  clusterName: prod\n  replicas", "  rollout: {after: \"2026-11-01T00:00:00Z\"}\n  clusterName: prod\n  replicas"), true, ages, EffectNone, 0, "no field"},
		{"rollout.after passed, ages unknown", replace("  clusterName: prod\n  replicas", "  rollout: {after: \"2026-12-02T12:00:00Z\"}\n  clusterName: prod\n  replicas"), true, nil, EffectUnknown, 0, "ages were not read"},
		{"OnDelete", func(s string) string {
			return replace("  clusterName: prod\n  replicas", "  rollout: {strategy: {type: OnDelete}}\n  clusterName: prod\n  replicas")(replace("version: v1.35.0", "version: v1.36.0")(s))
		}, true, ages, EffectNone, 0, "OnDelete"},
		{"paused", func(s string) string {
			return replace("  clusterName: prod\n  replicas", "  paused: true\n  clusterName: prod\n  replicas")(replace("version: v1.35.0", "version: v1.36.0")(s))
		}, true, ages, EffectRoll, 3, "deferred while the MachineDeployment is paused"},
		{"deletion order only", replace("  clusterName: prod\n  replicas", "  deletion: {order: Newest}\n  clusterName: prod\n  replicas"), true, ages, EffectNone, 0, "no field"},
		{"created", nil, false, nil, EffectScale, 3, "creates 3 Machines"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var live *unstructured.Unstructured
			if tt.live {
				live = md(t, nil)
			}
			r, err := MachineDeploymentRollout(live, md(t, tt.edit), tt.machines, now)
			if err != nil {
				t.Fatal(err)
			}
			if r.Effect != tt.effect || r.Machines != tt.count || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("rollout = %+v, want %s of %d with a reason saying %q", r, tt.effect, tt.count, tt.reason)
			}
			// A roll that begins later (a rollout.after ahead, a paused MachineDeployment) is
			// deferred: pacing does not hold it.
			if deferred := tt.name == "rollout.after ahead" || tt.name == "paused"; r.Deferred != deferred {
				t.Errorf("deferred = %t, want %t", r.Deferred, deferred)
			}
		})
	}
}

func TestMachineDeploymentRolloutAtTheEndOfAnEarlierOne(t *testing.T) {
	// status.replicas still counts the old Machine on its way out: the roll replaces the 3 the
	// MachineDeployment is meant to have.
	live := md(t, replace("status:\n  replicas: 3\n", "status:\n  replicas: 4\n"))
	r, err := MachineDeploymentRollout(live, md(t, replace("version: v1.35.0", "version: v1.36.0")), nil, time.Now())
	if err != nil || r.Effect != EffectRoll || r.Machines != 3 {
		t.Errorf("rollout = %+v (%v), want a roll of 3", r, err)
	}
}

func TestSumRollouts(t *testing.T) {
	fs := []Finding{
		{Cluster: "a", Object: ObjectRef{Namespace: "n"}, Rollout: &Rollout{Effect: EffectRoll, Machines: 3}},
		{Cluster: "a", Object: ObjectRef{Namespace: "n"}, Rollout: &Rollout{Effect: EffectRoll, Machines: 3, ControlPlane: true}},
		{Cluster: "b", Object: ObjectRef{Namespace: "n"}, Rollout: &Rollout{Effect: EffectRoll, Machines: 2}},
		{Cluster: "c", Object: ObjectRef{Namespace: "n"}, Rollout: &Rollout{Effect: EffectScale, Machines: 2}},
		{Cluster: "c", Object: ObjectRef{Namespace: "n"}, Rollout: &Rollout{Effect: EffectInPlace, Machines: 2}},
		{Cluster: "d", Object: ObjectRef{Namespace: "n"}, Rollout: &Rollout{Effect: EffectUnknown}},
		{Cluster: "e"},
	}
	got := SumRollouts(fs)
	want := Rollouts{Machines: 8, ControlPlaneMachines: 3, Clusters: 2, Scaled: 1, InPlace: 1, Unknown: 1}
	if got != want {
		t.Errorf("SumRollouts = %+v, want %+v", got, want)
	}
	if s := got.String(); !strings.HasPrefix(s, "This revision replaces 8 Machines in 2 clusters (3 control plane), scales 1 pools, changes 1 in place") {
		t.Errorf("summary %q", s)
	}
}

func TestNeedsMachineAges(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	set := func(after string) func(string) string {
		return replace("  clusterName: prod\n  replicas", "  rollout: {after: \""+after+"\"}\n  clusterName: prod\n  replicas")
	}
	for _, tt := range []struct {
		name       string
		live, next func(string) string
		want       bool
	}{
		{"no rollout.after", nil, nil, false},
		{"set to a time past", nil, set("2026-12-02T12:00:00Z"), true},
		{"set to a time ahead", nil, set("2026-12-04T12:00:00Z"), false},
		{"unchanged", set("2026-12-02T12:00:00Z"), set("2026-12-02T12:00:00Z"), false},
	} {
		if got := NeedsMachineAges(md(t, tt.live), md(t, tt.next), now); got != tt.want {
			t.Errorf("%s: NeedsMachineAges = %v, want %v", tt.name, got, tt.want)
		}
	}
}
