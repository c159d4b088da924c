package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestASecondWriterFlippingAFieldIsHeldNotFought: another writer (Flux applying another value,
// a script in a loop) sets the replicas back every second for a minute. driftd corrects the first
// few times, then holds its correction with backoff and says so once, naming both writers: its
// writes and Events stay bounded instead of a hot loop.
func TestASecondWriterFlippingAFieldIsHeldNotFought(t *testing.T) {
	ns := "contested"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	drv.Start(t, ns, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", proxy.KubeconfigFile(t),
		"--owner", ns, "--git-cache-dir", t.TempDir(), "--interval", "10s")
	testenv.Eventually(t, 30*time.Second, "the fleet created and watched", func() bool { return drv.Watching(ns) && drv.Replicas(ns, "prod-md-0") == 3 })
	proxy.Reset()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	flips := 0
	for value := int64(5); ctx.Err() == nil; value = 11 - value { // 5, 6, 5, 6, ...
		drv.Scale(t, "flux-kustomize-controller", ns, "prod-md-0", value)
		flips++
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}

	corrections := len(proxy.Requests(func(r testenv.Request) bool {
		return testenv.Writes(r) && r.Method == http.MethodPatch && r.FieldManager == "driftd" && strings.HasSuffix(r.Path, "/machinedeployments/prod-md-0")
	}))
	var detected, blocked []string
	for _, e := range drv.Events(t, ns, "MachineDeployment", "prod-md-0") {
		switch {
		case strings.HasPrefix(e, "DriftDetected:"):
			detected = append(detected, e)
		case strings.HasPrefix(e, "CorrectionBlocked:"):
			blocked = append(blocked, e)
		}
	}
	t.Logf("%d flips: %d corrections, %d DriftDetected, %d CorrectionBlocked", flips, corrections, len(detected), len(blocked))
	if corrections < 1 || corrections > 5 {
		t.Errorf("driftd wrote the MachineDeployment %d times while another writer flipped it %d times; want a few, then a hold", corrections, flips)
	}
	if len(detected) > 6 {
		t.Errorf("%d DriftDetected Events; the drift is announced a few times, not on every flip", len(detected))
	}
	if len(blocked) != 1 || !strings.Contains(blocked[0], "flux-kustomize-controller") || !strings.Contains(blocked[0], "driftd") {
		t.Errorf("CorrectionBlocked Events %q; want one naming both writers", blocked)
	}
}
