package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestTransientAPIErrorsAreRetriedWithoutARestart: an overloaded or restarting API server answers
// 429 and 503. Neither is a verdict on the object: driftd retries with backoff, and the fleet
// converges without a restart, both when the first cycle creates it and when a watch re-checks an
// edit.
func TestTransientAPIErrorsAreRetriedWithoutARestart(t *testing.T) {
	ns := "retry"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	// Created without a dry run before (the creation is the check): the faults answer its creation.
	first := proxy.Inject(&testenv.Fault{Match: testenv.Patch("/machinedeployments/prod-md-0"), Status: http.StatusTooManyRequests, Times: 1})
	second := proxy.Inject(&testenv.Fault{Match: testenv.Patch("/machinedeployments/prod-md-0"), Status: http.StatusServiceUnavailable, Times: 1})
	drv.Start(t, ns, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", proxy.KubeconfigFile(t),
		"--owner", ns, "--git-cache-dir", t.TempDir(), "--interval", "1h")

	testenv.Eventually(t, 30*time.Second, "the MachineDeployment created despite a 429 and a 503 on its creation", func() bool {
		return drv.Replicas(ns, "prod-md-0") == 3
	})
	if proxy.FaultHits(first) != 1 || proxy.FaultHits(second) != 1 {
		t.Fatalf("the injected faults answered %d and %d requests, want 1 each", proxy.FaultHits(first), proxy.FaultHits(second))
	}
	testenv.Eventually(t, 10*time.Second, "the first cycle's watches", func() bool { return drv.Watching(ns) })

	// A watch re-check whose dry run fails twice.
	proxy.Reset()
	again := proxy.Inject(&testenv.Fault{Match: testenv.DryRunPatch("/machinedeployments/prod-md-0"), Status: http.StatusServiceUnavailable, Times: 2})
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 5)
	testenv.Eventually(t, 30*time.Second, "the edit corrected after two failed re-checks", func() bool {
		return drv.Replicas(ns, "prod-md-0") == 3
	})
	if n := proxy.FaultHits(again); n != 2 {
		t.Errorf("the re-check faults answered %d requests, want 2", n)
	}
	for _, r := range proxy.Requests(testenv.Writes) {
		if r.Status != 0 && !strings.HasSuffix(r.Path, "/machinedeployments/prod-md-0") && !strings.HasPrefix(r.Name, "driftd-") {
			t.Errorf("unintended write during the retries: %s %s", r.Method, r.Path)
		}
	}
	if n := len(proxy.Requests(func(r testenv.Request) bool {
		return testenv.Writes(r) && r.Status < 300 && strings.HasSuffix(r.Path, "/machinedeployments/prod-md-0")
	})); n != 1 {
		t.Errorf("the edit was corrected with %d writes, want 1", n)
	}
}
