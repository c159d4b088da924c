package e2e

import (
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestWatchCorrectionsDoNotWaitForAStalledFetch: the Git remote accepts a fetch and then hangs
// (for up to --git-timeout). Meanwhile an out-of-band edit is corrected as quickly as ever: the
// fetch holds no lock the per-object path needs.
func TestWatchCorrectionsDoNotWaitForAStalledFetch(t *testing.T) {
	ns := "stall"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	url, gate := repo.ServeHTTPGated(t)
	metrics := testenv.FreeAddr(t)
	drv.Start(t, ns, append(drv.Args(t, url, ns), "--interval", "500ms", "--git-timeout", "60s", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 30*time.Second, "the fleet created and watched", func() bool { return drv.Watching(ns) && drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.WaitForCycles(t, metrics, 1, 30*time.Second) // the watches of the first cycle are in place

	gate.Hold()
	testenv.Eventually(t, 10*time.Second, "a cycle's fetch hanging on the remote", func() bool { return gate.Waiting() > 0 })
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 10*time.Second, "the edit corrected", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	if gate.Waiting() == 0 {
		t.Fatal("the fetch stopped hanging before the correction was seen; the test proved nothing")
	}
	gate.Release()
}
