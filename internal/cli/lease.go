package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// leaseWait is how long `run --once` tries to take the lease before it refuses: longer than a
// retry of the elector, far shorter than a held lease's duration.
const leaseWait = 4 * time.Second

// holdLease takes the daemon's leader election lease (namespace/name) for the duration of one
// `run --once` that may replace Machines, so that it and a running daemon never keep two
// replacement budgets. It returns a release function, or an error naming the holder when another
// driftd holds the lease. Where the lease's namespace does not exist, no daemon can hold it:
// nothing is taken.
func holdLease(ctx context.Context, cfg *rest.Config, c client.Client, namespace, name string) (func(), error) {
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, &corev1.Namespace{}); apierrors.IsNotFound(err) {
		return func() {}, nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, name, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "_once_" + uuid.NewString()})
	if err != nil {
		return nil, err
	}
	acquired := make(chan struct{})
	released := make(chan struct{})
	leCtx, cancel := context.WithCancel(ctx)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second,
		ReleaseOnCancel: true, Name: name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(acquired) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(released)
		le.Run(leCtx)
	}()
	select {
	case <-acquired:
		return func() { cancel(); <-released }, nil
	case <-time.After(leaseWait):
	case <-ctx.Done():
	}
	cancel()
	<-released
	return nil, fmt.Errorf("another driftd (%s) holds the lease %s/%s: a run --once that may replace Machines would keep a second replacement budget beside it; stop it, or use --mode detect",
		le.GetLeader(), namespace, name)
}
