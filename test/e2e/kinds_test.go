package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const clusterResourceSet = `apiVersion: addons.cluster.x-k8s.io/v1beta2
kind: ClusterResourceSet
metadata:
  name: cni
spec:
  clusterSelector:
    matchLabels:
      cni: calico
  resources:
  - kind: ConfigMap
    name: calico
`

// TestAKindDriftdMayNotWatchIsReportedAndSkipped: the fleet holds a ClusterResourceSet, a kind
// config/'s ClusterRole does not grant. driftd, as its ServiceAccount, says once which RBAC rule
// it lacks, and the rest of the fleet is created and corrected; cycles complete, so it is ready.
const serviceAccount = "system:serviceaccount:driftd-system:driftd"

func TestAKindDriftdMayNotWatchIsReportedAndSkipped(t *testing.T) {
	env.InstallRBAC(t)
	ns := "kinds"
	repo := testenv.NewGitRepo(t, fleet.Prod(ns).Add("addons.yaml", clusterResourceSet).Files())
	metrics, probes := testenv.FreeAddr(t), testenv.FreeAddr(t)
	d := drv.Start(t, ns, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", env.ImpersonatingKubeconfig(t, serviceAccount, ""),
		"--owner", ns, "--git-cache-dir", t.TempDir(), "--interval", "500ms",
		"--metrics-bind-address", metrics, "--health-probe-bind-address", probes)

	testenv.Eventually(t, 60*time.Second, "the rest of the fleet created", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 30*time.Second, "a KindNotWatched Event naming the missing rule", func() bool {
		for _, e := range drv.StatusEvents(t, ns) {
			if strings.HasPrefix(e, "KindNotWatched:") && strings.Contains(e, "clusterresourcesets") && strings.Contains(e, "addons.cluster.x-k8s.io") {
				return true
			}
		}
		return false
	})
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 4)
	testenv.Eventually(t, 30*time.Second, "the edit corrected", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })

	testenv.WaitForCycles(t, metrics, 3, 60*time.Second)
	if code, body := httpGet(t, "http://"+probes+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d (%s) while cycles complete", code, body)
	}
	if v := testenv.MetricValue(metrics, "driftd_last_successful_cycle_timestamp_seconds"); v <= 0 {
		t.Errorf("driftd_last_successful_cycle_timestamp_seconds = %v", v)
	}
	n := 0
	for _, e := range drv.StatusEvents(t, ns) {
		if strings.HasPrefix(e, "KindNotWatched:") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d KindNotWatched Events after several cycles, want 1", n)
	}
	if c := strings.Count(d.Out.String(), "Kind not watched"); c != 1 {
		t.Errorf("the log says %d times that the kind is not watched, want once", c)
	}
}
