package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestRunWithoutItsNamespaceSaysSoOnceAndBacksOff: `driftd run` from a laptop against a management
// cluster where config/ was never applied has no namespace for its status ConfigMap. It says so
// once, clearly, and does not retry the write every cycle; the fleet is still corrected.
func TestRunWithoutItsNamespaceSaysSoOnceAndBacksOff(t *testing.T) {
	ns := "outside"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	metrics := testenv.FreeAddr(t)
	d := drv.Start(t, "outside-system", "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", proxy.KubeconfigFile(t),
		"--owner", ns, "--git-cache-dir", t.TempDir(), "--interval", "200ms", "--metrics-bind-address", metrics)
	testenv.Eventually(t, 30*time.Second, "the fleet created", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.WaitForCycles(t, metrics, 10, time.Minute)

	statusWrites := proxy.Requests(func(r testenv.Request) bool {
		return r.Method == http.MethodPatch && strings.Contains(r.Path, "/namespaces/outside-system/configmaps/driftd-status-")
	})
	if len(statusWrites) != 1 {
		t.Errorf("%d attempts to write the status ConfigMap over 10 cycles without its namespace, want 1 (then a growing wait)", len(statusWrites))
	}
	if events := proxy.Requests(func(r testenv.Request) bool {
		return r.Method == http.MethodPost && strings.Contains(r.Path, "/namespaces/outside-system/events")
	}); len(events) != 0 {
		t.Errorf("%d Events sent to the missing namespace", len(events))
	}
	if c := strings.Count(d.Out.String(), "its namespace does not exist"); c != 1 {
		t.Errorf("the log says %d times that the namespace is missing, want once:\n%s", c, d.Out.String())
	}
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 4)
	testenv.Eventually(t, 30*time.Second, "the fleet still corrected", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
}
