package capi

import (
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
)

// TestDriftdAgainstClusterAPI starts from an empty management cluster with Cluster API running,
// lets `driftd run` create a fleet repository of development clusters, and waits until Cluster
// API brought every Machine to Running with a Node.
func TestDriftdAgainstClusterAPI(t *testing.T) {
	repo, _ := fleetRepo(t)
	system := "driftd-system"
	_ = system
	start := time.Now()
	startRun(t, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", env.KubeconfigFile(t),
		"--namespace", ns, "--git-cache-dir", t.TempDir(), "--interval", "10s", "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	testenv.Eventually(t, 4*time.Minute, "every Machine of dev1 (3 control plane, 2 workers) and cc1 (1 + 1) Running with a Node", func() bool {
		d, dAll := running(t, "dev1")
		c, cAll := running(t, "cc1")
		return d == 5 && dAll == 5 && c == 2 && cAll == 2
	})
	t.Logf("fleet up in %s", time.Since(start).Round(time.Second))
}
