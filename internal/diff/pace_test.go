package diff

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestPace(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	admitted := func(p map[string]Pacing) string {
		var out []string
		for _, c := range []string{"f/a", "f/b", "f/c", "f/canary", "f/d"} {
			if p[c].Admit {
				out = append(out, c)
			}
		}
		return strings.Join(out, ",")
	}
	wants := func(names ...string) []WaveCluster {
		var out []WaveCluster
		for _, n := range names {
			out = append(out, WaveCluster{Cluster: n, Wave: LastWave, Wants: true})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		clusters []WaveCluster
		max      int
		admitted string
		reason   string // part of f/c's reason when held
	}{
		{name: "no limit: every change at once", clusters: wants("f/a", "f/b", "f/c"), max: 0, admitted: "f/a,f/b,f/c"},
		{name: "one at a time, in name order", clusters: wants("f/c", "f/b", "f/a"), max: 1, admitted: "f/a", reason: "at most 1 clusters roll at once"},
		{name: "two at a time", clusters: wants("f/c", "f/b", "f/a"), max: 2, admitted: "f/a,f/b", reason: "rolling: f/a; f/b"},
		{
			name:     "a cluster still rolling takes the place, whoever began it",
			clusters: append(wants("f/b", "f/c"), WaveCluster{Cluster: "f/a", Wave: LastWave, Rolling: "MachineDeployment a-md-0: 1 of 2 Machines up to date"}),
			max:      1, reason: "rolling: f/a (MachineDeployment a-md-0: 1 of 2 Machines up to date)",
		},
		{
			name:     "a further change to a rolling cluster is applied",
			clusters: append(wants("f/b", "f/c"), WaveCluster{Cluster: "f/a", Wave: LastWave, Wants: true, Rolling: "its topology is being reconciled"}),
			max:      1, admitted: "f/a", reason: "rolling: f/a",
		},
		{
			name:     "a new change to a cluster still rolling waits for the canary of its revision",
			clusters: append(wants("f/b", "f/c"), WaveCluster{Cluster: "f/canary", Wave: 0, Wants: true}, WaveCluster{Cluster: "f/a", Wave: LastWave, Wants: true, Rolling: "its topology is being reconciled"}),
			max:      1, reason: "begins once wave 0 has rolled; rolling: f/a (its topology is being reconciled)",
		},
		{
			name:     "the canary wave first, though its name sorts last",
			clusters: append(wants("f/a", "f/b", "f/c"), WaveCluster{Cluster: "f/canary", Wave: 0, Wants: true}),
			max:      3, admitted: "f/canary", reason: "its wave (unlabelled) begins once wave 0 has rolled; rolling: f/canary",
		},
		{
			name:     "a wave waits for the one before it to finish, with places left",
			clusters: append(wants("f/a", "f/b", "f/c"), WaveCluster{Cluster: "f/canary", Wave: 0, Rolling: "1 of 1 new Machines running"}),
			max:      3, reason: "begins once wave 0 has rolled",
		},
		{
			name:     "the next wave once the canary finished",
			clusters: append(wants("f/a", "f/b", "f/c"), WaveCluster{Cluster: "f/canary", Wave: 0}),
			max:      2, admitted: "f/a,f/b", reason: "at most 2 clusters",
		},
		{
			name:     "a rollout past the timeout is named stuck and still holds the rest",
			clusters: append(wants("f/b", "f/c"), WaveCluster{Cluster: "f/a", Wave: LastWave, Rolling: "0 of 1 new Machines running", Since: now.Add(-time.Hour)}),
			max:      1, reason: "f/a, not finished within 30m0s (0 of 1 new Machines running)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Pace(tc.clusters, tc.max, now, 30*time.Minute)
			if got := admitted(p); got != tc.admitted {
				t.Errorf("admitted %q, want %q", got, tc.admitted)
			}
			if tc.reason != "" && (p["f/c"].Admit || !strings.Contains(p["f/c"].Reason, tc.reason)) {
				t.Errorf("f/c: %+v, want held with a reason containing %q", p["f/c"], tc.reason)
			}
			if strings.Contains(tc.name, "stuck") && strings.Join(p["f/c"].Stuck, ",") != "f/a" {
				t.Errorf("stuck = %v, want f/a", p["f/c"].Stuck)
			}
			if !strings.Contains(tc.name, "stuck") && len(p["f/c"].Stuck) > 0 {
				t.Errorf("stuck = %v before any timeout", p["f/c"].Stuck)
			}
		})
	}
}

func TestWaveOf(t *testing.T) {
	c := &unstructured.Unstructured{}
	if w, err := WaveOf(c); w != LastWave || err != nil {
		t.Errorf("no label: %d, %v; want the last wave", w, err)
	}
	c.SetLabels(map[string]string{LabelRolloutWave: "0"})
	if w, err := WaveOf(c); w != 0 || err != nil {
		t.Errorf("wave 0: %d, %v", w, err)
	}
	c.SetLabels(map[string]string{LabelRolloutWave: "canary"})
	if w, err := WaveOf(c); w != LastWave || err == nil || !strings.Contains(err.Error(), `"canary"`) {
		t.Errorf("a word: %d, %v; want the last wave and an error naming it", w, err)
	}
}

func fromYAML(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{} // numbers as the API's objects have them: int64
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRolloutProgress(t *testing.T) {
	since := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cluster := func(status, gen string) *unstructured.Unstructured {
		return fromYAML(t, `{kind: Cluster, metadata: {name: c, generation: 3}, spec: {topology: {version: v1.35.0}},
status: {conditions: [{type: TopologyReconciled, status: "`+status+`", reason: Upgrading, observedGeneration: `+gen+`}]}}`)
	}
	md := func(gen, replicas, upToDate, available string) *unstructured.Unstructured {
		return fromYAML(t, `{kind: MachineDeployment, metadata: {name: c-md-0, generation: 2}, spec: {replicas: 2},
status: {observedGeneration: `+gen+`, replicas: `+replicas+`, upToDateReplicas: `+upToDate+`, availableReplicas: `+available+`}}`)
	}
	machine := func(name, created string, running, deleting bool) *unstructured.Unstructured {
		m := fromYAML(t, `{kind: Machine, metadata: {name: `+name+`, creationTimestamp: "`+created+`"}, status: {phase: Provisioning}}`)
		if running {
			m.Object["status"] = map[string]any{"phase": "Running", "nodeRef": map[string]any{"name": name}}
		}
		if deleting {
			m.Object["metadata"].(map[string]any)["deletionTimestamp"] = created
		}
		return m
	}
	settled := md("2", "2", "2", "2")
	for _, tc := range []struct {
		name     string
		cluster  *unstructured.Unstructured
		pools    []*unstructured.Unstructured
		machines []*unstructured.Unstructured
		expect   int
		want     string
	}{
		{name: "settled", cluster: cluster("True", "3"), pools: []*unstructured.Unstructured{settled}},
		{name: "topology being upgraded", cluster: cluster("False", "3"), pools: []*unstructured.Unstructured{settled}, want: "its topology is being reconciled (Upgrading)"},
		{name: "topology not reconciled since the change", cluster: cluster("True", "2"), pools: []*unstructured.Unstructured{settled}, want: "not reconciled since the change"},
		{name: "a MachineDeployment's change not observed", pools: []*unstructured.Unstructured{md("1", "2", "2", "2")}, want: "MachineDeployment c-md-0: its change is not observed yet"},
		{name: "a surge Machine", pools: []*unstructured.Unstructured{md("2", "3", "1", "2")}, want: "1 of 2 Machines up to date, 2 available, 3 in all"},
		{name: "not available", pools: []*unstructured.Unstructured{md("2", "2", "2", "1")}, want: "1 available"},
		{name: "a Machine being deleted", pools: []*unstructured.Unstructured{settled}, machines: []*unstructured.Unstructured{machine("old", "2026-12-03T11:00:00Z", true, true)}, want: "Machine old is being deleted"},
		{
			name: "driftd began it and no new Machine runs yet (Cluster API has not reacted)", pools: []*unstructured.Unstructured{settled}, expect: 1,
			machines: []*unstructured.Unstructured{machine("old", "2026-12-03T11:00:00Z", true, false), machine("new", "2026-12-03T12:00:01Z", false, false)},
			want:     "0 of 1 new Machines running",
		},
		{
			name: "driftd began it and its new Machines run", pools: []*unstructured.Unstructured{settled}, expect: 1,
			machines: []*unstructured.Unstructured{machine("new", "2026-12-03T12:00:01Z", true, false)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RolloutProgress(tc.cluster, tc.pools, tc.machines, since, tc.expect)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("progress %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClusterRollout(t *testing.T) {
	cluster := func(version, class string, cpReplicas, mdReplicas int, extra string) *unstructured.Unstructured {
		return fromYAML(t, `{apiVersion: cluster.x-k8s.io/v1beta2, kind: Cluster, metadata: {name: cc1, namespace: fleet},
spec: {topology: {classRef: {name: `+class+`}, version: `+version+`, controlPlane: {replicas: `+itoa(cpReplicas)+`},
workers: {machineDeployments: [{class: default-worker, name: md-0, replicas: `+itoa(mdReplicas)+extra+`}]}}}}`)
	}
	users := []ClassUser{{Cluster: "fleet/cc1", Machines: 3}, {Cluster: "fleet/cc1", Worker: "md-0", Class: "default-worker", Machines: 2}}
	live := cluster("v1.35.0", "in-memory", 3, 2, "")
	changes := ClassTemplateChanges(class(t, "worker"), class(t, "worker-v2"))
	spec := func(d string) any {
		return map[string]any{"template": map[string]any{"spec": map[string]any{"startup": d}}}
	}
	rotated := changes[0]
	rotated.OldSpec, rotated.NewSpec = spec("2s"), spec("3s")
	renamed := changes[0]
	renamed.OldSpec, renamed.NewSpec = spec("2s"), spec("2s")
	for _, tc := range []struct {
		name     string
		next     *unstructured.Unstructured
		changes  []TemplateChange
		effect   Effect
		machines int
		reason   string
	}{
		{name: "a version bump: the control plane first, then the workers", next: cluster("v1.35.1", "in-memory", 3, 2, ""), effect: EffectRoll, machines: 5,
			reason: "spec.topology.version v1.35.0 → v1.35.1: Cluster API upgrades the control plane first (3 Machines, one at a time), then the MachineDeployments (2 Machines"},
		{name: "a version bump with more replicas: one rollout", next: cluster("v1.35.1", "in-memory", 3, 4, ""), effect: EffectRoll, machines: 5, reason: "ride along"},
		{name: "a class with another worker spec", next: cluster("v1.35.0", "in-memory-v2", 3, 2, ""), changes: []TemplateChange{rotated}, effect: EffectRoll, machines: 2,
			reason: "spec.topology.classRef fleet/in-memory → fleet/in-memory-v2: spec.workers.machineDeployments[default-worker].infrastructure.templateRef"},
		{name: "a class with the same specs under new names", next: cluster("v1.35.0", "in-memory-v2", 3, 2, ""), changes: []TemplateChange{renamed}, effect: EffectNone, reason: "the same spec under a new name"},
		{name: "a class with the same templates", next: cluster("v1.35.0", "in-memory-v2", 3, 2, ""), effect: EffectNone, reason: "the same templates"},
		{name: "replicas", next: cluster("v1.35.0", "in-memory", 3, 5, ""), effect: EffectScale, machines: 3},
		{name: "a failure domain: unknown", next: cluster("v1.35.0", "in-memory", 3, 2, ", failureDomain: az-2"), effect: EffectUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ClusterRollout(live, tc.next, users, tc.changes, false)
			if r == nil || r.Effect != tc.effect || r.Machines != tc.machines || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("rollout = %+v, want %s of %d with a reason containing %q", r, tc.effect, tc.machines, tc.reason)
			}
			if r.Effect == EffectRoll && strings.Join(r.Clusters, ",") != "fleet/cc1" {
				t.Errorf("clusters = %v, want fleet/cc1", r.Clusters)
			}
			if strings.Contains(r.Reason, "cannot be paced") {
				t.Errorf("a Cluster's own change is paced: %q", r.Reason)
			}
		})
	}
	if r := ClusterRollout(live, live, users, nil, false); r != nil {
		t.Errorf("no change: %+v, want nil", r)
	}
	plain := fromYAML(t, `{kind: Cluster, metadata: {name: dev1}, spec: {paused: true}}`)
	if r := ClusterRollout(plain, plain, nil, nil, false); r != nil {
		t.Errorf("a Cluster without a topology: %+v, want nil (Cluster API makes no Machines from it)", r)
	}
	if r := ClusterRollout(nil, live, nil, nil, false); r.Effect != EffectScale || r.Machines != 5 {
		t.Errorf("a new Cluster: %+v, want a scale of 5", r)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
