package engine

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/driftd/driftd/internal/testenv"
)

// TestTheLoopCorrectsAfterAWatchEventBetweenCycles: the daemon's loop runs a first cycle, then
// corrects an object edited live through its watch and workqueue, long before the next cycle.
func TestTheLoopCorrectsAfterAWatchEventBetweenCycles(t *testing.T) {
	ns := "loop-watch"
	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	watches := NewWatches(mgr.GetCache(), env.Client, mgr.GetRESTMapper())
	e := New(Options{Owner: "loop", LiveFromCache: true}, Deps{
		Source: newDirSource(t, fleet(ns, "3")), Reader: mgr.GetCache(), Client: env.Client, Mapper: mgr.GetRESTMapper(), Kinds: watches,
	})
	loop, err := NewLoop(mgr, e, watches, LoopOptions{Interval: time.Hour}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	testenv.Eventually(t, 30*time.Second, "the first cycle to create the MachineDeployment", func() bool { return liveReplicas(t, ns) == 3 })
	testenv.Eventually(t, 10*time.Second, "the first cycle to end", func() bool { return loop.lastSuccess.Load() != 0 })
	if err := loop.Ready(nil); err != nil {
		t.Errorf("not ready after a complete cycle: %v", err)
	}
	scale(t, ns, "kubectl-edit", 7)
	testenv.Eventually(t, 30*time.Second, "the watch to set replicas back to 3", func() bool { return liveReplicas(t, ns) == 3 })
}
