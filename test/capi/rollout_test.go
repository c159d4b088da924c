package capi

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

// predict runs `driftd plan --ref branch --fail-on-rollout` on the fleet repository, as CI runs it on
// a pull request's branch before the merge, and returns its exit code, its document, and the
// rollout it predicts for the object of kind and name (failing the test when it predicts none).
func predict(t *testing.T, repo *testenv.GitRepo, system, branch, kind, name string) (int, driver.PlanDoc, *diff.Rollout) {
	t.Helper()
	code, doc, stderr := drv.Plan(t, "--repo", repo.Dir, "--ref", branch, "--path", "fleet", "--kubeconfig", drv.Kubeconfig(t),
		"--namespace", system, "--git-cache-dir", t.TempDir(), "--fail-on-rollout")
	f := doc.Finding(kind, name)
	if f == nil || f.Rollout == nil {
		t.Fatalf("plan --ref %s: no rollout predicted for %s %s (exit %d): %+v\n%s", branch, kind, name, code, doc.Findings, stderr)
	}
	t.Logf("plan --ref %s: exit %d; %s: %s %d (%s); %s", branch, code, name, f.Rollout.Effect, f.Rollout.Machines, f.Rollout.Reason, doc.Rollouts)
	return code, doc, f.Rollout
}

// replaced compares a pool's Machines before and after (by UID): how many of before are gone,
// and how many are new.
func replaced(before, after []string) (gone, created int) {
	for _, uid := range before {
		if !slices.Contains(after, uid) {
			gone++
		}
	}
	for _, uid := range after {
		if !slices.Contains(before, uid) {
			created++
		}
	}
	return gone, created
}

// controlPlane returns the Machines of dev1's KubeadmControlPlane by name.
func controlPlane(tb testing.TB) map[string]*unstructured.Unstructured {
	return list(tb, diff.GVKMachine, map[string]string{"cluster.x-k8s.io/control-plane-name": "dev1-control-plane"})
}

// rolloutPredictions proposes changes to dev1's MachineDeployment and control plane on a branch
// each, has `plan --ref` predict what Cluster API will do to their Machines, merges, and compares
// with what Cluster API's controllers then do (the Machines' UIDs): a label of the Machines (in
// place: none replaced), one more replica (scale: one created, none replaced), spec.rollout.after
// set to now (roll: every Machine created before it replaced), and the control plane's version
// (roll: its three Machines replaced).
func rolloutPredictions(t *testing.T, repo *testenv.GitRepo, system string) {
	file := filepath.Join(repo.Dir, "fleet", "dev1.yaml")
	workers := func() map[string]*unstructured.Unstructured { return pool(t, "dev1-md-0") }
	for _, tc := range []struct {
		name, branch string
		kind, target string
		machines     func() map[string]*unstructured.Unstructured
		edit         func(string) string
		effect       diff.Effect
		code         int
		settled      func(before []string) bool
	}{
		{
			name: "a label of the Machines", branch: "label-workers", effect: diff.EffectInPlace, code: 2,
			kind: "MachineDeployment", target: "dev1-md-0", machines: workers,
			edit: func(s string) string {
				return strings.Replace(s, "    metadata:\n      labels:\n        pool: dev1-md-0\n", "    metadata:\n      labels:\n        pool: dev1-md-0\n        team: platform\n", 1)
			},
			settled: func([]string) bool {
				ms := pool(t, "dev1-md-0")
				for _, m := range ms {
					if m.GetLabels()["team"] != "platform" {
						return false
					}
				}
				return len(ms) > 0
			},
		},
		{
			name: "one more replica", branch: "three-workers", effect: diff.EffectScale, code: 2,
			kind: "MachineDeployment", target: "dev1-md-0", machines: workers,
			edit: func(s string) string {
				return strings.Replace(s, "  clusterName: dev1\n  replicas: 2\n", "  clusterName: dev1\n  replicas: 3\n", 1)
			},
			settled: func([]string) bool {
				return len(runningUIDs(pool(t, "dev1-md-0"))) == 3 && len(pool(t, "dev1-md-0")) == 3
			},
		},
		{
			name: "rollout.after set to now", branch: "roll-workers", effect: diff.EffectRoll, code: 3,
			kind: "MachineDeployment", target: "dev1-md-0", machines: workers,
			edit: func(s string) string {
				after := time.Now().UTC().Format(time.RFC3339)
				return strings.Replace(s, "  clusterName: dev1\n  replicas: 3\n", "  clusterName: dev1\n  replicas: 3\n  rollout:\n    after: \""+after+"\"\n", 1)
			},
			settled: func(before []string) bool {
				now := runningUIDs(pool(t, "dev1-md-0"))
				gone, _ := replaced(before, now)
				return gone == len(before) && len(now) == 3 && len(pool(t, "dev1-md-0")) == 3
			},
		},
		{
			name: "the control plane's version", branch: "control-plane-v1.35.1", effect: diff.EffectRoll, code: 3,
			kind: "KubeadmControlPlane", target: "dev1-control-plane", machines: func() map[string]*unstructured.Unstructured { return controlPlane(t) },
			edit: func(s string) string {
				return strings.Replace(s, "spec:\n  replicas: 3\n  version: v1.35.0\n", "spec:\n  replicas: 3\n  version: v1.35.1\n", 1)
			},
			settled: func(before []string) bool {
				now := runningUIDs(controlPlane(t))
				gone, _ := replaced(before, now)
				return gone == len(before) && len(now) == 3 && len(controlPlane(t)) == 3
			},
		},
		{
			name: "the control plane's infrastructure template", branch: "control-plane-template", effect: diff.EffectRoll, code: 3,
			kind: "KubeadmControlPlane", target: "dev1-control-plane", machines: func() map[string]*unstructured.Unstructured { return controlPlane(t) },
			edit: func(s string) string {
				s = strings.Replace(s, "kind: DevMachineTemplate\nmetadata:\n  name: dev1-control-plane\n", "kind: DevMachineTemplate\nmetadata:\n  name: dev1-control-plane-v2\n", 1)
				return strings.Replace(s, "        kind: DevMachineTemplate\n        name: dev1-control-plane\n", "        kind: DevMachineTemplate\n        name: dev1-control-plane-v2\n", 1)
			},
			settled: controlPlaneReplaced(t),
		},
		{
			name: "the control plane's kubeadm config", branch: "control-plane-commands", effect: diff.EffectRoll, code: 3,
			kind: "KubeadmControlPlane", target: "dev1-control-plane", machines: func() map[string]*unstructured.Unstructured { return controlPlane(t) },
			edit: func(s string) string {
				return strings.Replace(s, "  kubeadmConfigSpec:\n", "  kubeadmConfigSpec:\n    preKubeadmCommands: [\"echo platform\"]\n", 1)
			},
			settled: controlPlaneReplaced(t),
		},
		{
			// Every Machine of the control plane joined (the first, which ran kubeadm init, was
			// replaced above): an initConfiguration only the first Machine used changes none.
			name: "an init-only change to the control plane", branch: "control-plane-init", effect: diff.EffectNone, code: 2,
			kind: "KubeadmControlPlane", target: "dev1-control-plane", machines: func() map[string]*unstructured.Unstructured { return controlPlane(t) },
			edit: func(s string) string {
				return strings.Replace(s, "  kubeadmConfigSpec:\n", "  kubeadmConfigSpec:\n    initConfiguration:\n      skipPhases: [addon/kube-proxy]\n", 1)
			},
			settled: controlPlaneJudged(t, "spec", "kubeadmConfigSpec", "initConfiguration", "skipPhases"),
		},
		{
			name: "the control plane's DNS", branch: "control-plane-dns", effect: diff.EffectNone, code: 2,
			kind: "KubeadmControlPlane", target: "dev1-control-plane", machines: func() map[string]*unstructured.Unstructured { return controlPlane(t) },
			edit: func(s string) string {
				return strings.Replace(s, "    clusterConfiguration:\n", "    clusterConfiguration:\n      dns:\n        imageTag: v1.12.1\n", 1)
			},
			settled: controlPlaneJudged(t, "spec", "kubeadmConfigSpec", "clusterConfiguration", "dns", "imageTag"),
		},
		{
			name: "the workers' bootstrap template", branch: "workers-bootstrap", effect: diff.EffectRoll, code: 3,
			kind: "MachineDeployment", target: "dev1-md-0", machines: workers,
			edit: func(s string) string {
				s = strings.Replace(s, "kind: KubeadmConfigTemplate\nmetadata:\n  name: dev1-md-0\n", "kind: KubeadmConfigTemplate\nmetadata:\n  name: dev1-md-0-b2\n", 1)
				return strings.Replace(s, "          kind: KubeadmConfigTemplate\n          name: dev1-md-0\n", "          kind: KubeadmConfigTemplate\n          name: dev1-md-0-b2\n", 1)
			},
			settled: workersReplaced(t),
		},
		{
			name: "the workers' version", branch: "workers-v1.35.1", effect: diff.EffectRoll, code: 3,
			kind: "MachineDeployment", target: "dev1-md-0", machines: workers,
			edit: func(s string) string {
				return strings.Replace(s, "      clusterName: dev1\n      version: v1.35.0\n", "      clusterName: dev1\n      version: v1.35.1\n", 1)
			},
			settled: workersReplaced(t),
		},
		{
			name: "the workers' failure domain", branch: "workers-fd", effect: diff.EffectRoll, code: 3,
			kind: "MachineDeployment", target: "dev1-md-0", machines: workers,
			edit: func(s string) string {
				return strings.Replace(s, "      clusterName: dev1\n      version: v1.35.1\n", "      clusterName: dev1\n      version: v1.35.1\n      failureDomain: fd-2\n", 1)
			},
			settled: workersReplaced(t),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			changed := tc.edit(string(b))
			if changed == string(b) {
				t.Fatalf("fixture: the edit changed nothing in fleet/dev1.yaml")
			}
			before := runningUIDs(tc.machines())
			commit := repo.Propose(t, tc.branch, tc.name, map[string]string{"fleet/dev1.yaml": changed})
			code, doc, r := predict(t, repo, system, tc.branch, tc.kind, tc.target)
			if code != tc.code || r.Effect != tc.effect {
				t.Errorf("plan --ref %s --fail-on-rollout: exit %d, effect %s; want %d and %s", tc.branch, code, r.Effect, tc.code, tc.effect)
			}
			if r.Replaces() != doc.Rollouts.Machines || r.ControlPlane != (tc.kind == "KubeadmControlPlane") ||
				(r.ControlPlane && doc.Rollouts.ControlPlaneMachines != r.Replaces()) {
				t.Errorf("the document's totals %+v differ from its one rolling finding's %+v", doc.Rollouts, r)
			}

			repo.ResetBranch(t, commit) // merged
			began := time.Now()
			testenv.Eventually(t, 4*time.Minute, "Cluster API done with "+tc.name, func() bool { return tc.settled(before) })
			gone, created := replaced(before, runningUIDs(tc.machines()))
			t.Logf("Cluster API, %s after the merge: %d Machines replaced, %d created", time.Since(began).Round(time.Second), gone, created)
			predictedCreated := 0 // a roll creates as many as it replaces, a scale what it says
			if r.Effect == diff.EffectRoll || r.Effect == diff.EffectScale {
				predictedCreated = r.Machines
			}
			if gone != r.Replaces() || created != predictedCreated {
				t.Errorf("predicted %s of %d Machines; Cluster API replaced %d and created %d", r.Effect, r.Machines, gone, created)
			}
		})
	}
}

// controlPlaneReplaced says every control-plane Machine running before is replaced by a running one.
func controlPlaneReplaced(t *testing.T) func(before []string) bool {
	return func(before []string) bool {
		now := runningUIDs(controlPlane(t))
		gone, _ := replaced(before, now)
		return gone == len(before) && len(now) == 3 && len(controlPlane(t)) == 3
	}
}

// workersReplaced says every worker Machine of dev1-md-0 running before is replaced by a running one.
func workersReplaced(t *testing.T) func(before []string) bool {
	return func(before []string) bool {
		now := runningUIDs(pool(t, "dev1-md-0"))
		gone, _ := replaced(before, now)
		return gone == len(before) && len(now) == 3 && len(pool(t, "dev1-md-0")) == 3
	}
}

// controlPlaneJudged says the merged change reached the KubeadmControlPlane (the field at path is
// set) and Cluster API's controller has judged its Machines against it and found all of them up to
// date, with none being replaced: its RollingOut condition false at that generation, its own
// verdict that nothing rolls. (status.observedGeneration is not waited for: after a DNS change the
// controller's reconcile ends in an error updating CoreDNS in the development provider's workload
// cluster, after its rollout verdict, and then it leaves observedGeneration alone.)
func controlPlaneJudged(t *testing.T, path ...string) func(before []string) bool {
	return func(before []string) bool {
		kcp := get(t, diff.GVKKubeadmControlPlane, "dev1-control-plane")
		if _, ok, _ := unstructured.NestedFieldNoCopy(kcp.Object, path...); !ok {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(kcp.Object, "status", "conditions")
		judged := false
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "RollingOut" {
				g, _ := m["observedGeneration"].(int64)
				judged = m["status"] == "False" && g == kcp.GetGeneration()
			}
		}
		upToDate, _, _ := unstructured.NestedInt64(kcp.Object, "status", "upToDateReplicas")
		replicas, _, _ := unstructured.NestedInt64(kcp.Object, "status", "replicas")
		return judged && upToDate == 3 && replicas == 3 && len(controlPlane(t)) == 3
	}
}

// workersOf returns the Machines of a cluster that are not its control plane's, by name.
func workersOf(tb testing.TB, cluster string) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for name, m := range machines(tb, cluster) {
		if _, cp := m.GetLabels()["cluster.x-k8s.io/control-plane"]; !cp {
			out[name] = m
		}
	}
	return out
}

// clonedFrom is the template the infrastructure template of a topology cluster's MachineDeployment
// md was cloned from (its cloned-from-name annotation), or "".
func clonedFrom(tb testing.TB, cluster, md string) string {
	for _, d := range list(tb, diff.GVKMachineDeployment, map[string]string{"cluster.x-k8s.io/cluster-name": cluster,
		"topology.cluster.x-k8s.io/deployment-name": md}) {
		ref, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "infrastructureRef", "name")
		if t := get(tb, gvkDevMT, ref); t != nil {
			return t.GetAnnotations()["cluster.x-k8s.io/cloned-from-name"]
		}
	}
	return ""
}

// classPredictions adds a second cluster of the ClusterClass (cc2), then proposes the class's
// worker template renamed, first to one with the same spec and then to one with another, has
// `plan --ref` predict what that does to both clusters' Machines, merges, and compares with what
// Cluster API's topology and MachineDeployment controllers then do: nothing rolls for the same
// spec (the clones are patched in place: a tool that compares names gets this wrong), and the
// workers of both clusters roll for another.
func classPredictions(t *testing.T, repo *testenv.GitRepo, system string) {
	read := func(file string) string {
		b, err := os.ReadFile(filepath.Join(repo.Dir, "fleet", file))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cc1, kustomization := read("cc1.yaml"), read("kustomization.yaml")
	repo.Commit(t, "a second cluster of the class", map[string]string{
		"fleet/cc2.yaml":           strings.Replace(cc1, "name: cc1\n", "name: cc2\n", 1),
		"fleet/kustomization.yaml": strings.Replace(kustomization, "- cc1.yaml\n", "- cc1.yaml\n- cc2.yaml\n", 1),
	})
	testenv.Eventually(t, 4*time.Minute, "cc2's Machines Running", func() bool {
		c, all := running(t, "cc2")
		return c == 2 && all == 2
	})
	const worker = "in-memory-default-worker-machinetemplate"
	classFile := read("clusterclass.yaml")
	i := strings.Index(classFile, "kind: DevMachineTemplate\nmetadata:\n  name: "+worker+"\n")
	if i < 0 {
		t.Fatal("fixture: the class's worker DevMachineTemplate is not where this test expects it")
	}
	end := strings.Index(classFile[i:], "---\n")
	template := "apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\n" + classFile[i:i+end]
	for _, tc := range []struct {
		name, template, edit string
		effect               diff.Effect
		code, replaced       int
	}{
		{name: "the same spec under a new name", template: worker + "-v2", effect: diff.EffectNone, code: 2},
		{name: "another spec", template: worker + "-v3", edit: `startupDuration: "3s"`, effect: diff.EffectRoll, code: 3, replaced: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			current := read("clusterclass.yaml")
			next := strings.Replace(template, "name: "+worker+"\n", "name: "+tc.template+"\n", 1)
			if tc.edit != "" {
				next = strings.Replace(next, `startupDuration: "2s"`, tc.edit, 1)
			}
			from := strings.Index(current, "      infrastructure:\n          templateRef:")
			if from < 0 {
				from = strings.Index(current, "        infrastructure:\n          templateRef:")
			}
			at := strings.Index(current[from:], "            name: ")
			eol := strings.Index(current[from+at:], "\n")
			changed := current[:from+at] + "            name: " + tc.template + current[from+at+eol:] + "---\n" + next
			before := map[string][]string{"cc1": runningUIDs(workersOf(t, "cc1")), "cc2": runningUIDs(workersOf(t, "cc2"))}
			commit := repo.Propose(t, "class-"+tc.template, tc.name, map[string]string{"fleet/clusterclass.yaml": changed})
			code, doc, r := predict(t, repo, system, "class-"+tc.template, "ClusterClass", "in-memory")
			if code != tc.code || r.Effect != tc.effect || r.Replaces() != tc.replaced || doc.Rollouts.Machines != tc.replaced ||
				(tc.replaced > 0 && (doc.Rollouts.Clusters != 2 || strings.Join(r.Clusters, ",") != ns+"/cc1,"+ns+"/cc2")) {
				t.Errorf("plan --ref: exit %d, %+v, totals %+v; want exit %d and %s of %d Machines in cc1 and cc2", code, r, doc.Rollouts, tc.code, tc.effect, tc.replaced)
			}

			repo.ResetBranch(t, commit) // merged
			began := time.Now()
			testenv.Eventually(t, 4*time.Minute, "Cluster API's topology controller onto "+tc.template, func() bool {
				if clonedFrom(t, "cc1", "md-0") != tc.template || clonedFrom(t, "cc2", "md-0") != tc.template {
					return false
				}
				for c, uids := range before {
					now := runningUIDs(workersOf(t, c))
					gone, _ := replaced(uids, now)
					if len(now) != len(uids) || len(workersOf(t, c)) != len(uids) || (tc.replaced > 0 && gone != len(uids)) {
						return false
					}
				}
				return true
			})
			gone := 0
			for c, uids := range before {
				g, _ := replaced(uids, runningUIDs(workersOf(t, c)))
				gone += g
			}
			t.Logf("Cluster API, %s after the merge: %d worker Machines replaced in cc1 and cc2", time.Since(began).Round(time.Second), gone)
			if gone != r.Replaces() {
				t.Errorf("predicted %s of %d Machines; Cluster API replaced %d", r.Effect, r.Replaces(), gone)
			}
		})
	}
}

// topologyVersionPrediction proposes cc1's topology version bumped, has `plan --ref` predict it
// (every Machine of cc1 rolls: its control plane first, then its workers), merges, and compares
// with what Cluster API's topology, control plane and MachineDeployment controllers then do: which
// Machines are replaced (by UID), and in which order (their creation times).
func topologyVersionPrediction(t *testing.T, repo *testenv.GitRepo, system string) {
	b, err := os.ReadFile(filepath.Join(repo.Dir, "fleet", "cc1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "    version: v1.35.0\n", "    version: v1.35.1\n", 1)
	if changed == string(b) {
		t.Fatal("fixture: cc1's topology version is not where this test expects it")
	}
	cps := func() map[string]*unstructured.Unstructured {
		return list(t, diff.GVKMachine, map[string]string{"cluster.x-k8s.io/cluster-name": "cc1", "cluster.x-k8s.io/control-plane": ""})
	}
	before := map[string][]string{"control plane": runningUIDs(cps()), "workers": runningUIDs(workersOf(t, "cc1"))}
	commit := repo.Propose(t, "cc1-v1.35.1", "cc1 to v1.35.1", map[string]string{"fleet/cc1.yaml": changed})
	code, doc, r := predict(t, repo, system, "cc1-v1.35.1", "Cluster", "cc1")
	if code != 3 || r.Effect != diff.EffectRoll || r.Machines != 2 || r.ControlPlaneMachines != 1 ||
		doc.Rollouts.Machines != 2 || doc.Rollouts.ControlPlaneMachines != 1 || !strings.Contains(r.Reason, "control plane first") {
		t.Errorf("plan --ref: exit %d, %+v, totals %+v; want exit 3 and a roll of 2 Machines (1 control plane, first)", code, r, doc.Rollouts)
	}

	repo.ResetBranch(t, commit) // merged
	began := time.Now()
	fresh := map[string]*unstructured.Unstructured{}
	testenv.Eventually(t, 5*time.Minute, "cc1's control plane and workers upgraded", func() bool {
		for which, ms := range map[string]map[string]*unstructured.Unstructured{"control plane": cps(), "workers": workersOf(t, "cc1")} {
			now := runningUIDs(ms)
			gone, _ := replaced(before[which], now)
			if gone != len(before[which]) || len(now) != len(before[which]) || len(ms) != len(before[which]) {
				return false
			}
			for _, m := range ms {
				fresh[which] = m
			}
		}
		return true
	})
	cp, w := fresh["control plane"].GetCreationTimestamp().Time, fresh["workers"].GetCreationTimestamp().Time
	t.Logf("Cluster API, %s after the merge: the new control-plane Machine created at %s, the new worker at %s",
		time.Since(began).Round(time.Second), cp.Format(time.TimeOnly), w.Format(time.TimeOnly))
	if !w.After(cp) {
		t.Errorf("the worker was replaced (created %s) no later than the control plane (%s); the prediction says the control plane first", w.Format(time.TimeOnly), cp.Format(time.TimeOnly))
	}
}
