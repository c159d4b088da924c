package faults

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// deleteNamespace deletes namespace ns as `kubectl delete namespace` and Kubernetes' namespace
// controller do (the test bed runs no controller-manager): the Namespace marked for deletion,
// then everything in it driftd keeps (its ConfigMaps, its lease, Events) deleted, then the
// Namespace finalized and gone.
func deleteNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	all := metav1.DeleteOptions{}
	if err := cs.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, all, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoordinationV1().Leases(ns).DeleteCollection(ctx, all, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.EventsV1().Events(ns).DeleteCollection(ctx, all, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Finalizers = nil
	if _, err := cs.CoreV1().Namespaces().Finalize(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "namespace "+ns+" gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
	})
}

// TestItsNamespaceDeletedWhileItRuns: the namespace that holds driftd's state (its lease, status,
// memo and the inventory of what it applied, which --prune deletes from) is deleted while driftd
// corrects an edit. driftd deletes nothing and writes nothing to the fleet but the correction;
// without its lease it stops leading. Installed again (the namespace back, driftd restarted with
// none of its state), it deletes nothing, writes its state again, and prunes what leaves Git
// afterwards: the inventory is rebuilt from what it applies.
func TestItsNamespaceDeletedWhileItRuns(t *testing.T) {
	ns := "fault-namespace-deleted"
	old := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-1\ndata: {a: b}\n"
	repo := testenv.NewGitRepo(t, fleet.Prod(ns).Add("old.yaml", old).Files())
	proxy := env.NewAPIProxy(t)
	flags := []string{"--prune", "--leader-elect", "--interval", "2s", "--health-probe-bind-address", "0"}
	first := spawnImage(t, daemonArgs(t, ns, repo, proxy, flags...)...)
	testenv.Eventually(t, 90*time.Second, "the first complete cycle", func() bool { return cycleDone(first) })

	proxy.Reset()
	held := proxy.Inject(&testenv.Fault{Times: 1, Delay: 3 * time.Second,
		Match: testenv.DryRunPatch("/namespaces/" + ns + "/machinedeployments/prod-md-0")})
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 30*time.Second, "driftd's dry run of the correction on its way", func() bool { return proxy.FaultHits(held) == 1 })
	deleteNamespace(t, system(ns))
	gone := time.Now()
	// With no namespace its lease cannot be renewed: the leader gives up (the kubelet would kill
	// the pod with its namespace anyway).
	testenv.Eventually(t, 60*time.Second, "the leader to give up without its lease", first.Exited)
	t.Logf("exited %s after its namespace was deleted; writes meanwhile:\n  %s", time.Since(gone).Round(time.Second),
		strings.Join(writes(proxy), "\n  "))
	if bad := unintended(proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes with its namespace gone: %v", bad)
	}
	if !configMapExists(t, ns, "old-1") {
		t.Fatal("old-1 deleted while driftd's inventory was gone")
	}

	proxy.Reset()
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 8)
	second := spawnImage(t, daemonArgs(t, ns, repo, proxy, flags...)...) // its namespace created again
	testenv.Eventually(t, 90*time.Second, "the reinstalled driftd's first complete cycle", func() bool { return cycleDone(second) })
	testenv.Eventually(t, 30*time.Second, "the edit corrected", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	for _, r := range proxy.Requests(func(r testenv.Request) bool { return r.Method == http.MethodDelete }) {
		t.Errorf("the reinstalled driftd, with none of its state, deleted %s", r.Path)
	}
	for _, name := range []string{"driftd-status-" + ns, "driftd-inventory-" + ns} {
		if !configMapExists(t, system(ns), name) {
			t.Errorf("%s not written again", name)
		}
	}
	if bad := unintended(proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes of the reinstalled driftd: %v", bad)
	}

	repo.Commit(t, "retire old-1", map[string]string{
		fleet.Dir + "/old.yaml": testenv.Delete, fleet.Dir + "/kustomization.yaml": fleet.Prod(ns).Files()[fleet.Dir+"/kustomization.yaml"],
	})
	testenv.Eventually(t, 60*time.Second, "old-1 pruned from the rebuilt inventory", func() bool { return !configMapExists(t, ns, "old-1") })
}
