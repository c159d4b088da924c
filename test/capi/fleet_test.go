package capi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var (
	gvkDevCluster = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "DevCluster"}
	gvkDevMT      = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "DevMachineTemplate"}
	gvkKCT        = schema.GroupVersionKind{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"}
	gvkCC         = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "ClusterClass"}
)

const remediate = "cluster.x-k8s.io/remediate-machine"

// TestDriftdAgainstClusterAPI starts from an empty management cluster with Cluster API's
// controllers and webhooks running, lets `driftd run --prune --provider in-memory` create a fleet
// repository of development clusters, and then plays what a platform team meets, one after the
// other on that fleet: a quiet fleet, a topology-managed cluster, kubectl scale, a wrong cloud
// answer, machines deleted in the cloud, an immutable template changed in Git the wrong way and
// the CAPI way, and kubectl delete cluster.
func TestDriftdAgainstClusterAPI(t *testing.T) {
	repo, files := fleetRepo(t)
	system := drv.Namespace(t, "driftd-system")
	proxy := env.NewAPIProxy(t)
	metrics := testenv.FreeAddr(t)
	config := filepath.Join(t.TempDir(), "driftd.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`provider: [in-memory]
inventories:
- provider: in-memory
  url: %s
  infrastructureKinds: [DevCluster]
  tokenFile: %s
  timeout: 10s
`, env.Inventory, env.InventoryTokenFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	drv.Start(t, system, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", proxy.KubeconfigFile(t),
		"--git-cache-dir", t.TempDir(), "--interval", "10s", "--cloud-interval", "3s", "--prune",
		"--config", config, "--metrics-bind-address", metrics, "--health-probe-bind-address", "0")
	all := func(testenv.Request) bool { return true }
	since := func(mark int, keep func(testenv.Request) bool) []testenv.Request {
		var out []testenv.Request
		for _, r := range proxy.Requests(all)[mark:] {
			if keep(r) {
				out = append(out, r)
			}
		}
		return out
	}
	mark := func() int { return len(proxy.Requests(all)) }
	// Each step plays on the fleet the steps before it left: after a failed step, the later ones
	// would judge a fleet in a state nobody meant, so they do not run.
	step := func(name string, f func(t *testing.T)) bool {
		t.Helper()
		if t.Failed() {
			t.Logf("%s: not run, an earlier step failed", name)
			return false
		}
		began := time.Now()
		ok := t.Run(name, f)
		t.Logf("%s: %s", name, time.Since(began).Round(100*time.Millisecond))
		return ok
	}

	if !step("fleet up", func(t *testing.T) {
		testenv.Eventually(t, 4*time.Minute, "every Machine of dev1 (3 control plane, 2 workers) and cc1 (1 + 1) Running with a Node", func() bool {
			d, dAll := running(t, "dev1")
			c, cAll := running(t, "cc1")
			return d == 5 && dAll == 5 && c == 2 && cAll == 2
		})
		t.Logf("fleet up %s after driftd started", time.Since(start).Round(time.Second))
	}) {
		return
	}

	// The objects Cluster API's topology controller made for cc1 from the ClusterClass.
	clones := map[string]string{} // "Kind/name" → UID
	for _, gvk := range []schema.GroupVersionKind{diff.GVKKubeadmControlPlane, diff.GVKMachineDeployment, gvkDevCluster, gvkDevMT, gvkKCT} {
		for name, o := range list(t, gvk, map[string]string{"cluster.x-k8s.io/cluster-name": "cc1", "topology.cluster.x-k8s.io/owned": ""}) {
			clones[gvk.Kind+"/"+name] = string(o.GetUID())
		}
	}
	// The ClusterClass and its templates, as Git holds them.
	class := map[string]string{}
	for k, gvk := range map[string]schema.GroupVersionKind{
		"in-memory": gvkCC, "in-memory-control-plane": gvkDevMT,
		"in-memory-default-worker-machinetemplate": gvkDevMT, "in-memory-default-worker-bootstraptemplate": gvkKCT,
	} {
		if o := get(t, gvk, k); o != nil {
			class[gvk.Kind+"/"+k] = string(o.GetUID())
		} else {
			t.Fatalf("%s %s from Git is not there", gvk.Kind, k)
		}
	}

	step("no fight once Cluster API has settled", func(t *testing.T) {
		testenv.WaitForCycles(t, metrics, 1, time.Minute)
		from, began := mark(), time.Now().Add(-time.Second)
		testenv.WaitForCycles(t, metrics, 3, 2*time.Minute)
		waitForCloudLooks(t, 3, time.Minute)
		if w := since(from, fleetWrites); len(w) != 0 {
			t.Errorf("driftd wrote %d times to a settled fleet over 3 cycles:\n%s", len(w), strings.Join(describe(w), "\n"))
		}
		if dry := since(from, func(r testenv.Request) bool { return r.DryRun }); len(dry) != 0 {
			t.Errorf("driftd dry-ran %d applies against a settled fleet; an unchanged object is compared from the cache", len(dry))
		}
		// Meanwhile Cluster API writes what it writes, under its own field managers.
		capi := map[string]int{}
		for _, gvk := range []schema.GroupVersionKind{diff.GVKCluster, diff.GVKMachineDeployment, diff.GVKKubeadmControlPlane, diff.GVKMachineSet, diff.GVKMachine} {
			for _, o := range list(t, gvk, nil) {
				for _, mf := range o.GetManagedFields() {
					if mf.Manager != "driftd" && mf.Time != nil && !mf.Time.Time.Before(began) {
						capi[mf.Manager+" "+string(mf.Operation)+" "+mf.Subresource]++
					}
				}
			}
		}
		t.Logf("Cluster API's writes in the same time (manager operation subresource → objects): %v", capi)
		for _, e := range drv.AllEvents(t, ns) {
			if strings.Contains(e, "Orphaned") {
				t.Errorf("a topology clone reported as an orphan: %s", e)
			}
		}
	})

	step("topology: clones left alone, an edit of the Cluster's topology corrected through the Cluster", func(t *testing.T) {
		if len(clones) < 5 {
			t.Fatalf("the topology controller made %v for cc1; want its control plane, MachineDeployment, DevCluster and templates", clones)
		}
		from := mark()
		patch := []byte(`[{"op": "replace", "path": "/spec/topology/workers/machineDeployments/0/replicas", "value": 3}]`)
		cluster := get(t, diff.GVKCluster, "cc1")
		if err := env.Client.Patch(context.Background(), cluster, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner("kubectl-edit")); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, "driftd to restore cc1's worker replicas to Git's 1", func() bool {
			r, _, _ := unstructured.NestedSlice(get(t, diff.GVKCluster, "cc1").Object, "spec", "topology", "workers", "machineDeployments")
			n, _, _ := unstructured.NestedInt64(r[0].(map[string]any), "replicas")
			return n == 1
		})
		if !eventWith(t, "Cluster", "cc1", "DriftDetected", "/spec/topology/workers/machineDeployments") {
			t.Errorf("no DriftDetected on Cluster cc1 naming the topology field: %q", events(t, "Cluster", "cc1"))
		}
		testenv.Eventually(t, 2*time.Minute, "cc1's workers back to one Machine, Running", func() bool {
			ms := list(t, diff.GVKMachine, map[string]string{"cluster.x-k8s.io/cluster-name": "cc1", "topology.cluster.x-k8s.io/deployment-name": "md-0"})
			return len(ms) == 1 && len(runningUIDs(ms)) == 1
		})
		for _, w := range since(from, fleetWrites) {
			if !strings.HasSuffix(w.Path, "/clusters/cc1") {
				t.Errorf("driftd wrote %s %s: the topology's objects are Cluster API's to write", w.Method, w.Path)
			}
		}
		for k, uid := range clones {
			kind, name, _ := strings.Cut(k, "/")
			gvk := map[string]schema.GroupVersionKind{"KubeadmControlPlane": diff.GVKKubeadmControlPlane, "MachineDeployment": diff.GVKMachineDeployment, "DevCluster": gvkDevCluster,
				"DevMachineTemplate": gvkDevMT, "KubeadmConfigTemplate": gvkKCT}[kind]
			if o := get(t, gvk, name); o == nil || string(o.GetUID()) != uid {
				t.Errorf("the topology's %s is gone or was recreated", k)
			}
		}
		for _, e := range drv.AllEvents(t, ns) {
			if strings.Contains(e, "Orphaned") {
				t.Errorf("a topology clone reported as an orphan: %s", e)
			}
		}
	})

	step("kubectl scale: Git's replicas restored, the Machines converge back", func(t *testing.T) {
		before := runningUIDs(pool(t, "dev1-md-0"))
		if len(before) != 2 {
			t.Fatalf("dev1-md-0 has %d Machines Running; want 2", len(before))
		}
		scale := get(t, diff.GVKMachineDeployment, "dev1-md-0")
		if err := env.Client.SubResource("scale").Patch(context.Background(), scale, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":4}}`)),
			client.FieldOwner("kubectl-scale")); err != nil {
			t.Fatal(err)
		}
		var most int
		testenv.Eventually(t, 2*time.Minute, "dev1-md-0 back at 2 replicas with its own 2 Machines, nothing else", func() bool {
			ms := pool(t, "dev1-md-0")
			most = max(most, len(ms))
			n, _, _ := unstructured.NestedInt64(get(t, diff.GVKMachineDeployment, "dev1-md-0").Object, "spec", "replicas")
			return n == 2 && len(ms) == 2 && slices.Equal(runningUIDs(ms), before)
		})
		if !eventWith(t, "MachineDeployment", "dev1-md-0", "DriftDetected", "/spec/replicas") {
			t.Errorf("no DriftDetected on dev1-md-0 naming /spec/replicas: %q", events(t, "MachineDeployment", "dev1-md-0"))
		}
		t.Logf("dev1-md-0 had at most %d Machines meanwhile", most)
	})

	step("a wrong cloud answer replaces nothing", func(t *testing.T) {
		ctx := context.Background()
		before := runningUIDs(pool(t, "dev1-md-0"))
		if err := env.Answer(ctx, "empty"); err != nil {
			t.Fatal(err)
		}
		waitForCloudLooks(t, 3, time.Minute)
		if err := env.Answer(ctx, "incomplete"); err != nil {
			t.Fatal(err)
		}
		waitForCloudLooks(t, 2, time.Minute)
		// The endpoint down (503), answering with JSON that breaks off, and its last page slower
		// than the 10 s timeout.
		for _, mode := range []string{"error", "truncated", "slow"} {
			if err := env.Answer(ctx, mode); err != nil {
				t.Fatal(err)
			}
			waitForCloudLooks(t, 2, time.Minute)
		}
		if err := env.Answer(ctx, "normal"); err != nil {
			t.Fatal(err)
		}
		for name, m := range pool(t, "dev1-md-0") {
			if _, ok := m.GetAnnotations()[remediate]; ok {
				t.Errorf("Machine %s marked for remediation on a wrong answer", name)
			}
		}
		if after := runningUIDs(pool(t, "dev1-md-0")); !slices.Equal(after, before) {
			t.Errorf("dev1-md-0's Machines changed on a wrong answer: %v → %v", before, after)
		}
		if !eventWith(t, "Cluster", "dev1", "InventorySuspect") {
			t.Errorf("no InventorySuspect on Cluster dev1 for an answer with none of its instances: %q", events(t, "Cluster", "dev1"))
		}
		if !driver.HasEvent(drv.Events(t, system, "ConfigMap", "driftd-status-driftd"), "InventoryUnavailable", "does not say it is complete") {
			t.Errorf("no InventoryUnavailable for an answer that is not complete: %q", drv.Events(t, system, "ConfigMap", "driftd-status-driftd"))
		}
	})

	step("machines deleted in the cloud: replaced one at a time by the MachineHealthCheck", func(t *testing.T) {
		ctx := context.Background()
		waitForCloudLooks(t, 2, time.Minute) // the endpoint answers normally again
		ms := pool(t, "dev1-md-0")
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range ms {
				if !yield(n) {
					return
				}
			}
		})
		if len(names) != 2 {
			t.Fatalf("dev1-md-0 has Machines %v; want 2", names)
		}
		a, b := ms[names[0]], ms[names[1]]
		var (
			mu      sync.Mutex
			most    int
			stopped = make(chan struct{})
			done    = make(chan struct{})
		)
		go func() { // how many of the pool's Machines are being replaced at once
			defer close(done)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopped:
					return
				case <-tick.C:
				}
				l := &unstructured.UnstructuredList{}
				l.SetGroupVersionKind(diff.GVKMachine.GroupVersion().WithKind("MachineList"))
				if err := env.Client.List(ctx, l, client.InNamespace(ns), client.MatchingLabels{"cluster.x-k8s.io/deployment-name": "dev1-md-0"}); err != nil {
					continue
				}
				n := 0
				for _, m := range l.Items {
					if _, ok := m.GetAnnotations()[remediate]; ok || m.GetDeletionTimestamp() != nil {
						n++
					}
				}
				mu.Lock()
				most = max(most, n)
				mu.Unlock()
			}
		}()
		defer func() { close(stopped); <-done }()

		began := time.Now()
		if err := env.OutOfBand(ctx, strings.TrimPrefix(providerID(a), "in-memory://"), "delete"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, "driftd to ask for "+a.GetName()+"'s replacement", func() bool {
			m := get(t, diff.GVKMachine, a.GetName())
			_, marked := m.GetAnnotations()[remediate]
			return m == nil || marked || m.GetDeletionTimestamp() != nil
		})
		t.Logf("replacement of %s asked for %s after its instance was deleted", a.GetName(), time.Since(began).Round(100*time.Millisecond))
		// While its replacement provisions, a second machine goes.
		if err := env.OutOfBand(ctx, strings.TrimPrefix(providerID(b), "in-memory://"), "delete"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 3*time.Minute, "both replaced: two new Machines Running in dev1-md-0", func() bool {
			now := pool(t, "dev1-md-0")
			_, aLeft := now[a.GetName()]
			_, bLeft := now[b.GetName()]
			return !aLeft && !bLeft && len(now) == 2 && len(runningUIDs(now)) == 2
		})
		t.Logf("both replaced %s after the first instance was deleted", time.Since(began).Round(100*time.Millisecond))
		mu.Lock()
		if most > 1 {
			t.Errorf("%d Machines of dev1-md-0 were being replaced at once; the budget is 1", most)
		}
		mu.Unlock()
		for _, m := range []*unstructured.Unstructured{a, b} {
			if !eventWith(t, "Machine", m.GetName(), "DriftDetected", "InstanceMissing") || !eventWith(t, "Machine", m.GetName(), "MachineReplacementRequested") {
				t.Errorf("Machine %s: Events %q; want InstanceMissing and MachineReplacementRequested", m.GetName(), events(t, "Machine", m.GetName()))
			}
		}
		if !eventWith(t, "Machine", b.GetName(), "CorrectionBlocked", "budget") {
			t.Errorf("Machine %s was not held by the budget while %s's replacement provisioned: %q", b.GetName(), a.GetName(), events(t, "Machine", b.GetName()))
		}
		testenv.Eventually(t, time.Minute, "driftd to report dev1's machines clean again", func() bool {
			return testenv.MetricSum(metrics, `driftd_drifted_objects{cluster_name="dev1",layer="cloud"}`) == 0
		})
	})

	step("a control plane machine lost in the cloud: held without a MachineHealthCheck, replaced by KubeadmControlPlane with one", func(t *testing.T) {
		ctx := context.Background()
		cp := func() map[string]*unstructured.Unstructured {
			return list(t, diff.GVKMachine, map[string]string{"cluster.x-k8s.io/control-plane-name": "dev1-control-plane"})
		}
		before := cp()
		if len(runningUIDs(before)) != 3 {
			t.Fatalf("dev1's control plane has %d Machines Running; want 3", len(runningUIDs(before)))
		}
		victim := before[slices.Sorted(maps.Keys(before))[0]]
		from := mark()
		if err := env.OutOfBand(ctx, strings.TrimPrefix(providerID(victim), "in-memory://"), "delete"); err != nil {
			t.Fatal(err)
		}
		// No MachineHealthCheck selects the control plane: driftd will not take a control plane
		// Machine away behind KubeadmControlPlane's back (etcd quorum is its business); it says so.
		testenv.Eventually(t, time.Minute, "DriftDetected on "+victim.GetName()+" saying why it is not replaced", func() bool {
			return eventWith(t, "Machine", victim.GetName(), "DriftDetected", "InstanceMissing", "action blocked", "only through a MachineHealthCheck") &&
				eventWith(t, "Machine", victim.GetName(), "CorrectionBlocked", "only through a MachineHealthCheck")
		})
		waitForCloudLooks(t, 2, time.Minute)
		if w := since(from, fleetWrites); len(w) != 0 {
			t.Errorf("driftd wrote for a control plane Machine no MachineHealthCheck selects:\n%s", strings.Join(describe(w), "\n"))
		}
		if after := runningUIDs(cp()); !slices.Equal(after, runningUIDs(before)) {
			t.Errorf("dev1's control plane changed: %v → %v", runningUIDs(before), after)
		}

		// The platform team adds one in Git: KubeadmControlPlane remediates, keeping quorum.
		began := time.Now()
		repo.Commit(t, "dev1: health checks for the control plane", map[string]string{
			"fleet/kustomization.yaml": files["fleet/kustomization.yaml"] + "- dev1-control-plane-health.yaml\n",
			"fleet/dev1-control-plane-health.yaml": `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineHealthCheck
metadata:
  name: dev1-control-plane
spec:
  clusterName: dev1
  selector:
    matchLabels:
      cluster.x-k8s.io/control-plane-name: dev1-control-plane
  checks:
    unhealthyNodeConditions:
    - type: Ready
      status: Unknown
      timeoutSeconds: 300
`})
		testenv.Eventually(t, 3*time.Minute, victim.GetName()+" replaced: 3 control plane Machines Running without it", func() bool {
			now := cp()
			_, left := now[victim.GetName()]
			return !left && len(now) == 3 && len(runningUIDs(now)) == 3
		})
		t.Logf("control plane Machine replaced %s after the MachineHealthCheck was committed", time.Since(began).Round(100*time.Millisecond))
		if !eventWith(t, "Machine", victim.GetName(), "MachineReplacementRequested", "MachineHealthCheck dev1-control-plane") {
			t.Errorf("Machine %s: Events %q; want MachineReplacementRequested through dev1-control-plane", victim.GetName(), events(t, "Machine", victim.GetName()))
		}
		testenv.Eventually(t, time.Minute, "driftd to report dev1's machines clean again", func() bool {
			return testenv.MetricSum(metrics, `driftd_drifted_objects{cluster_name="dev1",layer="cloud"}`) == 0
		})
	})

	step("an immutable template changed in Git: the webhook's denial reported, then the CAPI way rolled out", func(t *testing.T) {
		before := runningUIDs(pool(t, "dev1-md-0"))
		dev1 := files["fleet/dev1.yaml"]
		worker := "provisioning: {startupDuration: \"10s\", startupJitter: \"0.2\"}"
		if strings.Count(dev1, worker) != 1 {
			t.Fatalf("fixture: the worker template's vm provisioning %q occurs %d times", worker, strings.Count(dev1, worker))
		}
		changed := strings.Replace(dev1, worker, "provisioning: {startupDuration: \"11s\", startupJitter: \"0.2\"}", 1)
		repo.Commit(t, "workers boot slower (edited in place)", map[string]string{"fleet/dev1.yaml": changed})
		testenv.Eventually(t, time.Minute, "CorrectionFailed on DevMachineTemplate dev1-md-0 with the hint", func() bool {
			return eventWith(t, "DevMachineTemplate", "dev1-md-0", "CorrectionFailed", "immutable", "hint: Cluster API templates are immutable")
		})
		if after := runningUIDs(pool(t, "dev1-md-0")); !slices.Equal(after, before) {
			t.Errorf("dev1-md-0's Machines changed on a rejected correction: %v → %v", before, after)
		}

		// The CAPI way: a new template, the MachineDeployment pointed at it, the old one out of Git.
		rolled := strings.Replace(changed, "kind: DevMachineTemplate\nmetadata:\n  name: dev1-md-0\n", "kind: DevMachineTemplate\nmetadata:\n  name: dev1-md-0-v2\n", 1)
		rolled = strings.Replace(rolled, "kind: DevMachineTemplate\n        name: dev1-md-0\n", "kind: DevMachineTemplate\n        name: dev1-md-0-v2\n", 1)
		if strings.Count(rolled, "dev1-md-0-v2") != 2 {
			t.Fatalf("fixture: the rename touched %d places; want the template and the MachineDeployment's reference", strings.Count(rolled, "dev1-md-0-v2"))
		}
		// Before the merge, on the pull request's branch: plan says the commit replaces both
		// Machines of dev1-md-0, and why.
		proposal := repo.Propose(t, "slower-workers", "workers boot slower: dev1-md-0-v2", map[string]string{"fleet/dev1.yaml": rolled})
		code, doc, r := predict(t, repo, system, "slower-workers", "MachineDeployment", "dev1-md-0")
		if code != 3 || r.Effect != diff.EffectRoll || r.Machines != len(before) || !strings.Contains(r.Reason, "spec.infrastructureRef") ||
			doc.Rollouts.Machines != len(before) || doc.Rollouts.Clusters != 1 {
			t.Errorf("plan --ref slower-workers --fail-on-rollout: exit %d, %+v, totals %+v; want exit 3 and a roll of dev1-md-0's %d Machines for its infrastructureRef",
				code, r, doc.Rollouts, len(before))
		}
		began, fromRoll := time.Now(), mark()
		repo.ResetBranch(t, proposal) // merged
		var brokeRollout []string
		testenv.Eventually(t, 4*time.Minute, "dev1-md-0 rolled out onto dev1-md-0-v2 and the old template pruned", func() bool {
			old := get(t, gvkDevMT, "dev1-md-0")
			users := 0
			for name, ms := range list(t, diff.GVKMachineSet, map[string]string{"cluster.x-k8s.io/deployment-name": "dev1-md-0"}) {
				if ref, _, _ := unstructured.NestedString(ms.Object, "spec", "template", "spec", "infrastructureRef", "name"); ref == "dev1-md-0" {
					users++
					if old == nil {
						brokeRollout = append(brokeRollout, name)
					}
				}
			}
			now := pool(t, "dev1-md-0")
			fresh := 0
			for _, m := range now {
				if !slices.Contains(before, string(m.GetUID())) && driver.IsRunning(m) {
					fresh++
				}
			}
			return old == nil && users == 0 && fresh == 2 && len(now) == 2
		})
		t.Logf("rolled out in %s", time.Since(began).Round(100*time.Millisecond))
		if len(brokeRollout) > 0 {
			t.Errorf("the old template was pruned while MachineSet(s) %v still used it", slices.Compact(brokeRollout))
		}
		// While Cluster API rolled out (new MachineSet, Machines, status of everything), driftd wrote
		// what the commit asked for and nothing else: the new template, the reference, the old
		// template's deletion once unused.
		want := map[string]string{"/devmachinetemplates/dev1-md-0-v2": http.MethodPatch,
			"/machinedeployments/dev1-md-0": http.MethodPatch, "/devmachinetemplates/dev1-md-0": http.MethodDelete}
		seen := map[string]int{}
		for _, w := range since(fromRoll, fleetWrites) {
			path := w.Path[strings.LastIndex(w.Path[:strings.LastIndex(w.Path, "/")], "/"):]
			if want[path] != w.Method {
				t.Errorf("driftd wrote during the roll-out what the commit did not ask for: %s", describe([]testenv.Request{w}))
				continue
			}
			seen[path]++
		}
		for path := range want {
			if seen[path] == 0 || seen[path] > 2 {
				t.Errorf("driftd's writes to %s during the roll-out: %d; want 1 (2 at most, a retry)", path, seen[path])
			}
		}
		capi := 0
		for _, gvk := range []schema.GroupVersionKind{diff.GVKMachineDeployment, diff.GVKMachineSet, diff.GVKMachine} {
			for _, o := range list(t, gvk, map[string]string{"cluster.x-k8s.io/cluster-name": "dev1"}) {
				for _, mf := range o.GetManagedFields() {
					if mf.Manager != "driftd" && mf.Time != nil && !mf.Time.Time.Before(began.Add(-time.Second)) {
						capi++
					}
				}
			}
		}
		t.Logf("driftd's writes during the roll-out %v; Cluster API's managers wrote %d (object, manager) pairs of dev1's MachineDeployments, MachineSets and Machines meanwhile", seen, capi)
		if !eventWith(t, "DevMachineTemplate", "dev1-md-0", "DriftDetected", "still in use by MachineSet") {
			t.Errorf("no word that the old template waits for the rollout: %q", events(t, "DevMachineTemplate", "dev1-md-0"))
		}
		testenv.WaitForCycles(t, metrics, 1, time.Minute)
		from := mark()
		testenv.WaitForCycles(t, metrics, 2, time.Minute)
		if w := since(from, fleetWrites); len(w) != 0 {
			t.Errorf("driftd wrote %d times after the rollout settled:\n%s", len(w), strings.Join(describe(w), "\n"))
		}
	})

	step("kubectl delete cluster completes while driftd runs; Git brings the cluster back", func(t *testing.T) {
		cluster := get(t, diff.GVKCluster, "cc1")
		uid := cluster.GetUID()
		from, began := mark(), time.Now()
		if err := env.Client.Delete(context.Background(), cluster); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 3*time.Minute, "Cluster cc1 deleted", func() bool {
			c := get(t, diff.GVKCluster, "cc1")
			return c == nil || c.GetUID() != uid
		})
		t.Logf("deleted in %s", time.Since(began).Round(100*time.Millisecond))
		for _, w := range since(from, func(r testenv.Request) bool { return fleetWrites(r) && r.Method == http.MethodDelete }) {
			t.Errorf("driftd deleted %s while a cluster was being deleted", w.Path)
		}
		testenv.Eventually(t, 4*time.Minute, "cc1 back from Git, its Machines Running", func() bool {
			c, all := running(t, "cc1")
			return c == 2 && all == 2
		})
		t.Logf("back up %s after the delete", time.Since(began).Round(time.Second))
		for k, uid := range class {
			kind, name, _ := strings.Cut(k, "/")
			gvk := map[string]schema.GroupVersionKind{"ClusterClass": gvkCC, "DevMachineTemplate": gvkDevMT, "KubeadmConfigTemplate": gvkKCT}[kind]
			if o := get(t, gvk, name); o == nil || string(o.GetUID()) != uid {
				t.Errorf("the ClusterClass's %s is gone or was recreated", k)
			}
		}
	})

	step("plan --ref predicts what Cluster API then does to a MachineDeployment and a control plane, rule by rule", func(t *testing.T) {
		rolloutPredictions(t, repo, system)
	})

	step("plan --ref predicts what a ClusterClass change does to the Clusters that use it", func(t *testing.T) {
		classPredictions(t, repo, system)
	})

	step("plan --ref predicts a topology version bump: the control plane first, then the workers", func(t *testing.T) {
		topologyVersionPrediction(t, repo, system)
	})

	// The templates Git renamed, each once its rollout was done: the workers' infrastructure
	// template (the CAPI way), the control plane's, and the workers' bootstrap template.
	deletes := since(0, func(r testenv.Request) bool { return fleetWrites(r) && r.Method == http.MethodDelete })
	var deleted []string
	for _, d := range deletes {
		deleted = append(deleted, d.Path[strings.LastIndex(d.Path[:strings.LastIndex(d.Path, "/")], "/")+1:])
	}
	slices.Sort(deleted)
	if want := []string{"devmachinetemplates/dev1-control-plane", "devmachinetemplates/dev1-md-0", "kubeadmconfigtemplates/dev1-md-0"}; !t.Failed() && !slices.Equal(deleted, want) {
		t.Errorf("driftd's deletions over the whole run: %v; want only the templates Git renamed, once their rollouts were done: %v", describe(deletes), want)
	}
}
