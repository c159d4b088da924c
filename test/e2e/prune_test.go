package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// uids returns the UID of every object of the fleet's kinds in ns, by "Kind/name".
func uids(tb testing.TB, ns string) map[string]types.UID {
	tb.Helper()
	out := map[string]types.UID{}
	for _, gvk := range fleetKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			tb.Fatal(err)
		}
		for _, item := range list.Items {
			if gvk.Kind == "ConfigMap" && (item.GetName() == "kube-root-ca.crt" || strings.HasPrefix(item.GetName(), "driftd-")) {
				continue // the cluster's own, and driftd's (status, inventory)
			}
			out[gvk.Kind+"/"+item.GetName()] = item.GetUID()
		}
	}
	return out
}

// sameUIDs fails the test for every object of before that is gone or was replaced, except those
// in gone.
func sameUIDs(tb testing.TB, ns string, before map[string]types.UID, gone ...string) {
	tb.Helper()
	after := uids(tb, ns)
	for name, uid := range before {
		switch {
		case slices.Contains(gone, name):
			if _, still := after[name]; still {
				tb.Errorf("%s is still there", name)
			}
		case after[name] == "":
			tb.Errorf("%s was deleted", name)
		case after[name] != uid:
			tb.Errorf("%s was replaced (uid %s → %s)", name, uid, after[name])
		}
	}
}

func TestATypoInGitDeletesNothingWithPrune(t *testing.T) {
	for _, tc := range []struct{ name, from, to, reason string }{
		{"misspelt kind", "kind: KubeadmControlPlane\nmetadata:", "kind: KubeadmControlplane\nmetadata:", "unknown kind"},
		{"unserved version", "apiVersion: controlplane.cluster.x-k8s.io/v1beta2\nkind: KubeadmControlPlane", "apiVersion: controlplane.cluster.x-k8s.io/v1beta9\nkind: KubeadmControlPlane", "unknown kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "typo-" + strings.ReplaceAll(tc.name, " ", "-")
			repo, files, args := applied(t, ns, "--prune")
			before := uids(t, ns)

			repo.Commit(t, "a typo", map[string]string{"fleet/cluster.yaml": replaceOnce(t, files["fleet/cluster.yaml"], tc.from, tc.to)})
			code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
			if code != 1 || !strings.Contains(errOut, "fleet/cluster.yaml") || !strings.Contains(errOut, tc.reason) {
				t.Errorf("run --once --prune over a typo: exit %d, want 1 with the file and %q named\nstdout: %s\nstderr: %s", code, tc.reason, out, errOut)
			}
			sameUIDs(t, ns, before)
			if evs := drv.StatusEvents(t, ns); !driver.HasEvent(evs, "RenderFailed") || !strings.Contains(strings.Join(evs, "\n"), "fleet/cluster.yaml") {
				t.Errorf("no RenderFailed Event naming the file on the status ConfigMap: %q", evs)
			}
			if code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...); code != 1 || len(doc.Errors) == 0 {
				t.Errorf("plan: exit %d, errors %q; want 1 and the typo named", code, doc.Errors)
			} else {
				for _, f := range doc.Findings {
					if f.Class == diff.ClassOrphaned {
						t.Errorf("plan looked for orphans in a partial render: %+v", f)
					}
				}
			}
		})
	}
}

func TestPruneLimitHoldsBackAMassDeletion(t *testing.T) {
	ns := "prune-limit"
	f := fleet.Prod(ns)
	for i := 1; i <= 6; i++ {
		f.Add(fmt.Sprintf("settings-%d.yaml", i), fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-%d\ndata:\n  tier: gold\n", i))
	}
	repo := testenv.NewGitRepo(t, f.Files())
	args := append(drv.Args(t, repo.Dir, ns), "--prune")
	drv.RunOnce(t, ns, args...)
	before := uids(t, ns)

	// One commit drops six objects: more than --max-prune's 5.
	repo.Commit(t, "drop the settings", map[string]string{"fleet/kustomization.yaml": fleet.Kustomization(ns, "cluster.yaml", "workers.yaml")})
	drv.RunOnce(t, ns, args...)
	sameUIDs(t, ns, before)
	evs := drv.StatusEvents(t, ns)
	if !driver.HasEvent(evs, "PruneBlocked") || !strings.Contains(strings.Join(evs, "\n"), "6 deletions") {
		t.Errorf("no PruneBlocked Event naming the 6 deletions on the status ConfigMap: %q", evs)
	}
	code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...)
	blocked := 0
	for _, f := range doc.Findings {
		if f.Class == diff.ClassOrphaned && f.Action == diff.ActionBlocked && strings.Contains(f.Reason, "prune limit") {
			blocked++
		}
	}
	if code != 2 || blocked != 6 {
		t.Errorf("plan: exit %d, %d orphans blocked by the limit; want 2 and 6\n%+v", code, blocked, doc.Findings)
	}

	// Raising the limit lets them go, and only them.
	drv.RunOnce(t, ns, append(args, "--max-prune", "10", "--max-prune-percent", "100")...)
	var gone []string
	for i := 1; i <= 6; i++ {
		gone = append(gone, fmt.Sprintf("ConfigMap/settings-%d", i))
	}
	sameUIDs(t, ns, before, gone...)
}

func TestPruneCreatesTheSuccessorBeforeItDeletesARenamedTemplate(t *testing.T) {
	ns := "prune-rename"
	files := fleet.AWS(ns)
	repo := testenv.NewGitRepo(t, files)
	proxy := env.NewAPIProxy(t)
	args := []string{"--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", proxy.KubeconfigFile(t),
		"--owner", ns, "--git-cache-dir", t.TempDir(), "--prune"}
	drv.RunOnce(t, ns, args...)
	before := uids(t, ns)

	// The Cluster API way to change a template: a new name, and the reference pointed at it.
	workers := strings.ReplaceAll(files["fleet/workers.yaml"], "kind: AWSMachineTemplate\n        name: prod-md-0", "kind: AWSMachineTemplate\n        name: prod-md-0-v2")
	workers = replaceOnce(t, workers, "kind: AWSMachineTemplate\nmetadata:\n  name: prod-md-0\n", "kind: AWSMachineTemplate\nmetadata:\n  name: prod-md-0-v2\n")
	repo.Commit(t, "larger workers, the CAPI way", map[string]string{"fleet/workers.yaml": replaceOnce(t, workers, "instanceType: m6i.large", "instanceType: m6i.xlarge")})
	proxy.Reset()
	drv.RunOnce(t, ns, args...)

	var order []string
	for _, r := range proxy.Requests(testenv.Writes) {
		switch {
		case r.Method == http.MethodPatch && strings.HasSuffix(r.Path, "/awsmachinetemplates/prod-md-0-v2"):
			order = append(order, "create successor")
		case r.Method == http.MethodPatch && strings.HasSuffix(r.Path, "/machinedeployments/prod-md-0"):
			order = append(order, "point the reference")
		case r.Method == http.MethodDelete && strings.HasSuffix(r.Path, "/awsmachinetemplates/prod-md-0"):
			order = append(order, "delete the old template")
		}
	}
	if want := []string{"create successor", "point the reference", "delete the old template"}; !slices.Equal(slices.Compact(order), want) {
		t.Errorf("writes in order %q, want %q", order, want)
	}
	sameUIDs(t, ns, before, "AWSMachineTemplate/prod-md-0")
	if !drv.Exists(gvkAMT, ns, "prod-md-0-v2") {
		t.Error("the successor template does not exist")
	}
}

// twoClusters is the small fleet with a second cluster, edge, that may be pruned.
func twoClusters(tb testing.TB, ns string) map[string]string {
	c, w := fleet.AWSCluster("edge")
	edge := replaceOnce(tb, c, "kind: Cluster\nmetadata:\n  name: edge\n", "kind: Cluster\nmetadata:\n  name: edge\n  annotations:\n    driftd.io/prune: enabled\n")
	return fleet.Prod(ns).Add("edge.yaml", edge+"---\n"+w).Files()
}

func TestAClusterLeavingGitIsDeletedAsAWhole(t *testing.T) {
	ns := "prune-cluster"
	files := twoClusters(t, ns)
	repo := testenv.NewGitRepo(t, files)
	args := append(drv.Args(t, repo.Dir, ns), "--prune")
	drv.RunOnce(t, ns, args...)
	before := uids(t, ns)

	repo.Commit(t, "retire edge", map[string]string{"fleet/kustomization.yaml": fleet.Kustomization(ns, "cluster.yaml", "workers.yaml")})
	code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...)
	actions := map[string]diff.Action{}
	for _, f := range doc.Findings {
		if f.Class == diff.ClassOrphaned {
			actions[f.Object.Kind+"/"+f.Object.Name] = f.Action
			if f.Object.Kind != "Cluster" && (f.Cluster != "edge" || !strings.Contains(f.Reason, "never deletes a Cluster's parts one by one")) {
				t.Errorf("part %s: cluster %q, reason %q", f.Object, f.Cluster, f.Reason)
			}
		}
	}
	want := map[string]diff.Action{"Cluster/edge": diff.ActionDelete, "AWSCluster/edge": diff.ActionReport,
		"KubeadmControlPlane/edge-cp": diff.ActionReport, "AWSMachineTemplate/edge-cp": diff.ActionReport,
		"MachineDeployment/edge-md-0": diff.ActionReport, "AWSMachineTemplate/edge-md-0": diff.ActionReport,
		"KubeadmConfigTemplate/edge-md-0": diff.ActionReport, "MachineHealthCheck/edge-md-0": diff.ActionReport}
	if code != 2 || fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("plan: exit %d, orphans %v\nwant %v", code, actions, want)
	}

	// Only the Cluster is deleted; Cluster API tears down its parts (no CAPI controller runs
	// here, so they stay, and driftd leaves them to it).
	drv.RunOnce(t, ns, args...)
	sameUIDs(t, ns, before, "Cluster/edge")
	drv.RunOnce(t, ns, args...) // and once the Cluster is gone, its leftovers are still not driftd's to delete
	sameUIDs(t, ns, before, "Cluster/edge")
}

func TestNothingOfAPausedOrDeletingClusterIsPrunedOrWritten(t *testing.T) {
	t.Run("paused", func(t *testing.T) {
		ns := "prune-paused"
		repo, files, args := applied(t, ns, "--prune")
		cluster := drv.Get(t, diff.GVKCluster, ns, "prod")
		cluster.SetAnnotations(map[string]string{diff.AnnotationPaused: ""})
		if err := env.Client.Update(context.Background(), cluster); err != nil {
			t.Fatal(err)
		}
		before := uids(t, ns)
		workers := files["fleet/workers.yaml"]
		repo.Commit(t, "retire the health check", map[string]string{
			"fleet/workers.yaml": workers[:strings.Index(workers, "---\napiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineHealthCheck")],
		})
		drv.RunOnce(t, ns, args...)
		sameUIDs(t, ns, before)
		if evs := drv.Events(t, ns, "MachineHealthCheck", "prod-md-0"); !driver.HasEvent(evs, "CorrectionBlocked") || !strings.Contains(strings.Join(evs, "\n"), "paused") {
			t.Errorf("Events on the orphan of a paused cluster: %q; want CorrectionBlocked naming the pause", evs)
		}
	})

	t.Run("being deleted", func(t *testing.T) {
		ns := "prune-deleting"
		repo, files, args := applied(t, ns, "--prune")
		// As Cluster API does: its controller holds a finalizer, and `kubectl delete cluster`
		// starts a teardown that deletes the parts first.
		cluster := drv.Get(t, diff.GVKCluster, ns, "prod")
		cluster.SetFinalizers([]string{"cluster.cluster.x-k8s.io"})
		if err := env.Client.Update(context.Background(), cluster); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Delete(context.Background(), cluster); err != nil {
			t.Fatal(err)
		}
		md := drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-0")
		if err := env.Client.Delete(context.Background(), md); err != nil {
			t.Fatal(err)
		}
		workers := files["fleet/workers.yaml"]
		repo.Commit(t, "retire the health check", map[string]string{
			"fleet/workers.yaml": workers[:strings.Index(workers, "---\napiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineHealthCheck")],
		})
		before := uids(t, ns)
		rv := drv.Get(t, gvkAMT, ns, "prod-md-0").GetResourceVersion()
		drv.RunOnce(t, ns, args...)
		sameUIDs(t, ns, before)
		if drv.Exists(diff.GVKMachineDeployment, ns, "prod-md-0") {
			t.Error("driftd re-created a MachineDeployment of a Cluster being deleted")
		}
		if drv.Get(t, gvkAMT, ns, "prod-md-0").GetResourceVersion() != rv {
			t.Error("driftd wrote to a template of a Cluster being deleted")
		}
		code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...)
		var missing *diff.Finding
		for i, f := range doc.Findings {
			if f.Object.Name == "prod-md-0" && f.Object.Kind == "MachineDeployment" {
				missing = &doc.Findings[i]
			}
		}
		if code != 2 || missing == nil || missing.Action != diff.ActionReport || !strings.Contains(missing.Reason, "being deleted") {
			t.Errorf("plan: exit %d, MachineDeployment finding %+v; want Missing, reported because the cluster is being deleted", code, missing)
		}

		// The teardown ends; the Cluster is still in Git, so driftd creates it anew, as Git says.
		cluster = drv.Get(t, diff.GVKCluster, ns, "prod")
		cluster.SetFinalizers(nil)
		if err := env.Client.Update(context.Background(), cluster); err != nil {
			t.Fatal(err)
		}
		drv.RunOnce(t, ns, args...)
		if !drv.Exists(diff.GVKCluster, ns, "prod") || !drv.Exists(diff.GVKMachineDeployment, ns, "prod-md-0") {
			t.Error("after the deletion ended, the Cluster in Git was not created again")
		}
	})
}

func TestAClusterMovingToAnotherShardIsHandedOverNotRecreated(t *testing.T) {
	ns := "shard-handover"
	files := fleet.AWS(ns)
	files["fleet/cluster.yaml"] = replaceOnce(t, files["fleet/cluster.yaml"], "kind: Cluster\nmetadata:\n  name: prod\n", "kind: Cluster\nmetadata:\n  name: prod\n  labels:\n    fleet.example.com/shard: a\n")
	repo := testenv.NewGitRepo(t, files)
	shard := func(name string) []string {
		return append(drv.Args(t, repo.Dir, "handover-"+name), "--shard", "fleet.example.com/shard="+name, "--prune")
	}
	drv.RunOnce(t, ns, shard("a")...)
	before := uids(t, ns)

	repo.Commit(t, "move prod to shard b", map[string]string{"fleet/cluster.yaml": strings.Replace(files["fleet/cluster.yaml"], "shard: a", "shard: b", 1)})
	drv.RunOnce(t, ns, shard("a")...) // shard a no longer handles prod: it must not delete it
	sameUIDs(t, ns, before)
	drv.RunOnce(t, ns, shard("b")...)
	sameUIDs(t, ns, before)
	if owner := drv.Get(t, diff.GVKCluster, ns, "prod").GetLabels()[diff.OwnerLabel]; owner != "handover-b" {
		t.Errorf("the Cluster's owner is %q after shard b ran, want handover-b", owner)
	}
	drv.RunOnce(t, ns, shard("a")...)
	sameUIDs(t, ns, before)
}

// TestForgedOwnershipMakesNothingAnOrphan: whoever may label an object in a fleet namespace can
// copy driftd's owner label and tracking id onto it. Such an object is not in driftd's inventory:
// --prune never deletes it (though the one who forged it may not be allowed to delete it
// themselves), and six forged orphans count toward no limit, so a legitimate prune beside them
// goes ahead.
func TestForgedOwnershipMakesNothingAnOrphan(t *testing.T) {
	ns := "forged"
	repo, files, args := applied(t, ns)

	forge := func(name string) {
		cm := &unstructured.Unstructured{Object: map[string]any{"data": map[string]any{"owner": "team-a"}}}
		cm.SetAPIVersion("v1")
		cm.SetKind("ConfigMap")
		cm.SetNamespace(ns)
		cm.SetName(name)
		diff.Track(cm, ns) // driftd's owner label and a tracking id naming the object itself
		if err := env.Client.Patch(context.Background(), cm, client.Apply, client.FieldOwner("tenant")); err != nil {
			t.Fatal(err)
		}
	}
	forge("team-a-settings") // a tenant's own object, labelled as if driftd applied it
	for i := range 6 {
		forge(fmt.Sprintf("forged-%d", i))
	}
	before := uids(t, ns)

	// A legitimate prune: the MachineHealthCheck leaves Git.
	workers := files["fleet/workers.yaml"]
	repo.Commit(t, "retire the health check", map[string]string{
		"fleet/workers.yaml": workers[:strings.Index(workers, "---\napiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineHealthCheck")],
	})
	code, doc, _ := drv.Plan(t, append(args, "--prune", "--namespace", ns)...)
	var orphans []string
	for _, f := range doc.Findings {
		if f.Class == diff.ClassOrphaned {
			orphans = append(orphans, f.Object.Kind+"/"+f.Object.Name+" "+string(f.Action))
		}
	}
	if code != 2 || fmt.Sprint(orphans) != "[MachineHealthCheck/prod-md-0 delete]" {
		t.Errorf("plan: exit %d, orphans %v; want only the MachineHealthCheck, to delete", code, orphans)
	}
	drv.RunOnce(t, ns, append(args, "--prune")...)
	sameUIDs(t, ns, before, "MachineHealthCheck/prod-md-0")
	if _, gone := uids(t, ns)["MachineHealthCheck/prod-md-0"]; gone {
		t.Error("the MachineHealthCheck that left Git was not pruned")
	}
	if evs := drv.StatusEvents(t, ns); driver.HasEvent(evs, "PruneBlocked") {
		t.Errorf("the prune was held back: %v", evs)
	}
}

// TestAPausedClusterHoldsBackNoOtherPrune: a cluster paused in Git is detect-only, so its parts are
// never created (reported blocked). That is no rejected object and says nothing about the render:
// another cluster's template renamed the Cluster API way is pruned as it would be without the
// paused cluster.
func TestAPausedClusterHoldsBackNoOtherPrune(t *testing.T) {
	ns := "prune-beside-paused"
	files := twoClusters(t, ns)
	files["fleet/edge.yaml"] = replaceOnce(t, files["fleet/edge.yaml"], "  name: edge\n  annotations:\n    driftd.io/prune: enabled\nspec:\n", "  name: edge\n  annotations:\n    driftd.io/prune: enabled\nspec:\n  paused: true\n")
	repo := testenv.NewGitRepo(t, files)
	args := append(drv.Args(t, repo.Dir, ns), "--prune")
	code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--log-development", "--namespace", ns}, args...)...)
	if code != 0 || !strings.Contains(out, "edge-md-0") || !strings.Contains(out, "blocked") {
		t.Fatalf("run --once: exit %d; want the paused cluster's parts reported blocked\n%s%s", code, out, errOut)
	}

	workers := strings.ReplaceAll(files["fleet/workers.yaml"], "kind: AWSMachineTemplate\n        name: prod-md-0", "kind: AWSMachineTemplate\n        name: prod-md-0-v2")
	workers = replaceOnce(t, workers, "kind: AWSMachineTemplate\nmetadata:\n  name: prod-md-0\n", "kind: AWSMachineTemplate\nmetadata:\n  name: prod-md-0-v2\n")
	repo.Commit(t, "larger workers, the CAPI way", map[string]string{"fleet/workers.yaml": replaceOnce(t, workers, "instanceType: m6i.large", "instanceType: m6i.xlarge")})
	drv.RunOnce(t, ns, args...)
	if !drv.Exists(gvkAMT, ns, "prod-md-0-v2") {
		t.Error("the successor template does not exist")
	}
	if drv.Exists(gvkAMT, ns, "prod-md-0") {
		t.Error("the renamed template was not pruned beside the paused cluster")
	}
}
