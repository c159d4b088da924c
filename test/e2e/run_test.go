package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestRunCorrectsAnOutOfBandEditWithinSeconds(t *testing.T) {
	ns := "run-correct"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	drv.Start(t, ns, append(drv.Args(t, repo.Dir, "run-correct"), "--interval", "1h")...)
	testenv.Eventually(t, 30*time.Second, "the fleet to be created", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	rv := drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-0").GetResourceVersion()
	testenv.Eventually(t, 10*time.Second, "the first cycle's watches", func() bool { return drv.Watching(ns) })

	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 5)
	testenv.Eventually(t, 10*time.Second, "replicas restored to 3", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 10*time.Second, "DriftDetected and DriftCorrected Events", func() bool {
		evs := drv.Events(t, ns, "MachineDeployment", "prod-md-0")
		return driver.HasEvent(evs, "DriftDetected") && driver.HasEvent(evs, "DriftCorrected")
	})
	evs := drv.Events(t, ns, "MachineDeployment", "prod-md-0")
	var detected string
	for _, e := range evs {
		if strings.HasPrefix(e, "DriftDetected:") {
			detected = e
		}
	}
	for _, want := range []string{"/spec/replicas", "desired 3", "live 5", "kubectl-edit"} {
		if !strings.Contains(detected, want) {
			t.Errorf("DriftDetected note %q lacks %q", detected, want)
		}
	}
	if drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-0").GetResourceVersion() == rv {
		t.Error("the MachineDeployment was never written back")
	}
}

func TestRunInDetectModeOnlyReports(t *testing.T) {
	ns := "run-detect"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	args := drv.Args(t, repo.Dir, "run-detect")
	drv.RunOnce(t, ns, args...) // the fleet exists, as provisioned earlier
	metrics := testenv.FreeAddr(t)
	drv.Start(t, ns, append(args, "--interval", "300ms", "--mode", "detect", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 10*time.Second, "the first cycle's watches", func() bool { return drv.Watching(ns) })

	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 6)
	testenv.Eventually(t, 10*time.Second, "DriftDetected", func() bool {
		return driver.HasEvent(drv.Events(t, ns, "MachineDeployment", "prod-md-0"), "DriftDetected")
	})
	testenv.WaitForCycles(t, metrics, 2, 30*time.Second) // two full cycles: room for a wrong correction
	if got := drv.Replicas(ns, "prod-md-0"); got != 6 {
		t.Errorf("detect mode changed replicas to %d; the live 6 must stay", got)
	}
	for _, e := range drv.Events(t, ns, "MachineDeployment", "prod-md-0") {
		if strings.HasPrefix(e, "DriftCorrected: Modified") {
			t.Errorf("detect mode announced a correction: %s", e)
		}
	}
}

// TestARestartDoesNotDryRunWhatWasCorrectedBeforeTheStop: an edit a watch corrected after the last
// cycle is stored as clean when driftd stops, so the restarted driftd's first cycle over the
// unchanged fleet sends no dry run.
func TestARestartDoesNotDryRunWhatWasCorrectedBeforeTheStop(t *testing.T) {
	ns := "run-stop"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	args := []string{"--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", proxy.KubeconfigFile(t),
		"--owner", ns, "--git-cache-dir", t.TempDir(), "--interval", "1h"}
	dm := drv.Start(t, ns, args...)
	testenv.Eventually(t, 30*time.Second, "the fleet to be created", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 10*time.Second, "the first cycle's watches", func() bool { return drv.Watching(ns) })
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 5)
	testenv.Eventually(t, 10*time.Second, "replicas restored to 3", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	if code, ok := dm.Stop(30 * time.Second); !ok || code != 0 {
		t.Fatalf("driftd stopped: %v, exit %d", ok, code)
	}

	proxy.Reset()
	metrics := testenv.FreeAddr(t)
	drv.Start(t, ns, append(args, "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 30*time.Second, "the restarted driftd's first cycle", func() bool {
		return testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count") >= 1
	})
	for _, r := range proxy.Requests(func(r testenv.Request) bool { return r.DryRun }) {
		t.Errorf("the restarted driftd dry-ran %s %s, unchanged since it was corrected before the stop", r.Method, r.Path)
	}
}
