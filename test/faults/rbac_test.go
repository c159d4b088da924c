package faults

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// installed is the namespace and ServiceAccount config/default installs driftd as.
const (
	installed      = "driftd-system"
	serviceAccount = "system:serviceaccount:" + installed + ":driftd"
)

// refused selects the requests the API server answered 403: refused, they changed nothing.
func refused(r testenv.Request) bool { return r.Status == http.StatusForbidden }

// TestRBACRevokedAndRestoredMidRun: driftd runs as config/default installs it (its ServiceAccount,
// its ClusterRole and Role). While it is on its way to correct an edit (its dry run held in the
// proxy), someone deletes its ClusterRoleBinding. Forbidden is no verdict on the object: driftd
// writes nothing, reports no rejection, keeps its lease (the Role in its namespace still holds), and
// once the binding is back corrects the edit with one write and nothing else.
func TestRBACRevokedAndRestoredMidRun(t *testing.T) {
	ctx := context.Background()
	ns := "fault-rbac-revoked"
	env.InstallRBAC(t)
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	probe := testenv.FreeAddr(t)
	p := spawnImage(t, "run", "--namespace", installed, "--repo", repo.Dir, "--ref", "main", "--path", fleet.Dir,
		"--kubeconfig", env.ImpersonatingKubeconfig(t, serviceAccount, proxy.URL), "--owner", ns,
		"--git-cache-dir", t.TempDir(), "--metrics-bind-address", "0", "--leader-elect", "--interval", "5s",
		"--health-probe-bind-address", probe)
	testenv.Eventually(t, 90*time.Second, "the first complete cycle", func() bool { return cycleDone(p) })
	if drv.Replicas(ns, "prod-md-0") != 3 {
		t.Fatal("the fleet was not created as driftd's ServiceAccount")
	}

	proxy.Reset()
	held := proxy.Inject(&testenv.Fault{Times: 1, Delay: 3 * time.Second,
		Match: testenv.DryRunPatch("/namespaces/" + ns + "/machinedeployments/prod-md-0")})
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 30*time.Second, "driftd's dry run of the correction on its way", func() bool { return proxy.FaultHits(held) == 1 })
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "driftd"}}
	if err := env.Client.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	forbidden := func() int {
		return len(proxy.Requests(func(r testenv.Request) bool {
			return r.Method == http.MethodPatch && r.Name == "prod-md-0" && refused(r)
		}))
	}
	testenv.Eventually(t, 60*time.Second, "the correction refused, refused again on a retry, for two cycles", func() bool {
		return forbidden() >= 2 && time.Since(revoked) >= 10*time.Second
	})
	if got := drv.Replicas(ns, "prod-md-0"); got != 7 {
		t.Fatalf("replicas %d while driftd may not patch; the test proved nothing", got)
	}
	if bad := unintended(proxy, bookkeeping(installed), refused); len(bad) > 0 {
		t.Errorf("writes while RBAC was revoked: %v", bad)
	}
	for _, e := range drv.Events(t, ns, "MachineDeployment", "prod-md-0") {
		if strings.Contains(e, "rejects") {
			t.Errorf("RBAC's forbidden taken for a verdict on the object: %s", e)
		}
	}
	if p.Exited() {
		t.Fatalf("driftd exited while its ClusterRoleBinding was gone:\n%s", p.Out.String())
	}

	env.InstallRBAC(t)
	restored := time.Now()
	testenv.Eventually(t, 90*time.Second, "the edit corrected once the binding is back", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	t.Logf("corrected %s after the binding was restored (%d requests refused meanwhile); writes:\n  %s",
		time.Since(restored).Round(time.Second), forbidden(), strings.Join(writes(proxy), "\n  "))
	if bad := unintended(proxy, bookkeeping(installed), refused, applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
	if n := len(proxy.Requests(func(r testenv.Request) bool {
		return applyOf(ns, "prod-md-0")(r) && testenv.Writes(r) && r.Status == http.StatusOK
	})); n != 1 {
		t.Errorf("%d corrections of prod-md-0 went through, want 1", n)
	}
}
