package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/testenv"
)

// daemon is `driftd run` running in-process until the test ends.
type daemon struct {
	cancel context.CancelFunc
	done   chan int
	out    *testenv.SyncBuffer
}

// startRun starts `driftd run` with args and stops it when the test ends.
func startRun(tb testing.TB, ns string, args ...string) *daemon {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan int, 1), out: &testenv.SyncBuffer{}}
	full := append([]string{"run", "--namespace", ns, "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--log-development"}, args...)
	go func() { d.done <- cliExecute(ctx, full, d.out) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			tb.Errorf("driftd run did not stop within 30s of its context ending")
		}
		if tb.Failed() {
			tb.Logf("driftd run output:\n%s", d.out.String())
		}
	})
	return d
}

func TestRunCorrectsAnOutOfBandEditWithinSeconds(t *testing.T) {
	ns := "run-correct"
	repo := testenv.NewGitRepo(t, fleetFiles(ns))
	startRun(t, ns, append(commonArgs(t, repo.Dir, "run-correct"), "--interval", "1h")...)
	testenv.Eventually(t, 30*time.Second, "the fleet to be created", func() bool { return replicasOrZero(ns, "prod-md-0") == 3 })
	rv := get(t, gvkMD, ns, "prod-md-0").GetResourceVersion()
	testenv.Eventually(t, 10*time.Second, "the first cycle's watches", func() bool { return watching(ns) })

	scaleAs(t, "kubectl-edit", ns, "prod-md-0", 5)
	testenv.Eventually(t, 10*time.Second, "replicas restored to 3", func() bool { return replicas(t, ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 10*time.Second, "DriftDetected and DriftCorrected Events", func() bool {
		evs := events(t, ns, "MachineDeployment", "prod-md-0")
		return hasReason(evs, "DriftDetected") && hasReason(evs, "DriftCorrected")
	})
	evs := events(t, ns, "MachineDeployment", "prod-md-0")
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
	if get(t, gvkMD, ns, "prod-md-0").GetResourceVersion() == rv {
		t.Error("the MachineDeployment was never written back")
	}
}

func TestRunInDetectModeOnlyReports(t *testing.T) {
	ns := "run-detect"
	repo := testenv.NewGitRepo(t, fleetFiles(ns))
	args := commonArgs(t, repo.Dir, "run-detect")
	runOnce(t, ns, args...) // the fleet exists, as provisioned earlier
	metrics := testenv.FreeAddr(t)
	startRun(t, ns, append(args, "--interval", "300ms", "--mode", "detect", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 10*time.Second, "the first cycle's watches", func() bool { return watching(ns) })

	scaleAs(t, "kubectl-edit", ns, "prod-md-0", 6)
	testenv.Eventually(t, 10*time.Second, "DriftDetected", func() bool {
		return hasReason(events(t, ns, "MachineDeployment", "prod-md-0"), "DriftDetected")
	})
	testenv.WaitForCycles(t, metrics, 2, 30*time.Second) // two full cycles: room for a wrong correction
	if got := replicas(t, ns, "prod-md-0"); got != 6 {
		t.Errorf("detect mode changed replicas to %d; the live 6 must stay", got)
	}
	for _, e := range events(t, ns, "MachineDeployment", "prod-md-0") {
		if strings.HasPrefix(e, "DriftCorrected: Modified") {
			t.Errorf("detect mode announced a correction: %s", e)
		}
	}
}

// watching reports whether the status ConfigMap was written, i.e. the first cycle finished and
// the loop has started its watches.
func watching(ns string) bool {
	return statusExists(ns)
}

// replicasOrZero is the MachineDeployment's replicas, or 0 while it does not exist.
func replicasOrZero(ns, name string) int64 {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkMD)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return 0
	}
	r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	return r
}

func configMapExists(ns, name string) bool {
	return env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.ConfigMap{}) == nil
}

func cliExecute(ctx context.Context, args []string, out *testenv.SyncBuffer) int {
	return cli.Execute(ctx, args, out, out)
}
