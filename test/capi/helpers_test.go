package capi

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const ns = "fleet-dev"

var ()

// cloudLooks counts the inventory snapshots driftd has asked for (first pages).
func cloudLooks(t *testing.T) float64 {
	return float64(env.SnapshotCalls(t))
}

// waitForCloudLooks waits until driftd asked the inventory endpoint for n more snapshots.
func waitForCloudLooks(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	start := cloudLooks(t)
	testenv.Eventually(t, timeout, fmt.Sprintf("%d more inventory snapshots", n), func() bool { return cloudLooks(t) >= start+float64(n) })
}

func providerID(m *unstructured.Unstructured) string {
	p, _, _ := unstructured.NestedString(m.Object, "spec", "providerID")
	return p
}

// fleetWrites are driftd's writes to the fleet: everything but its status ConfigMap, memo,
// lease and Events.
// fleetWrites are driftd's writes to the fleet: not to its own ConfigMaps (status, memo, inventory
// and its parts, all in its namespace) or its lease.
func fleetWrites(r testenv.Request) bool {
	return testenv.Writes(r) && !strings.Contains(r.Path, "/namespaces/driftd-system/configmaps") && !strings.Contains(r.Path, "/leases/")
}

func describe(rs []testenv.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s (%s) %d", r.Method, r.Path, r.FieldManager, r.Status))
	}
	return out
}

// fleetRepo is a git repository holding the development fleet as a platform team pushes it.
func fleetRepo(tb testing.TB) (*testenv.GitRepo, map[string]string) {
	files := fleet.DevClusters()
	return testenv.NewGitRepo(tb, files), files
}

// machines are the Machines of a cluster, by name.
func machines(tb testing.TB, cluster string) map[string]*unstructured.Unstructured {
	return list(tb, diff.GVKMachine, map[string]string{"cluster.x-k8s.io/cluster-name": cluster})
}

// running counts the Machines of a cluster that are Running with a Node, and all of them.
func running(tb testing.TB, cluster string) (int, int) {
	ms := machines(tb, cluster)
	return driver.Running(slices.Collect(maps.Values(ms))), len(ms)
}

// events are driftd's Events on an object of the fleet namespace, as "Reason: note".
func events(tb testing.TB, kind, name string) []string { return drv.Events(tb, ns, kind, name) }

// eventWith reports whether driftd's Events on an object of the fleet namespace hold one with
// reason whose note contains every part.
func eventWith(tb testing.TB, kind, name, reason string, parts ...string) bool {
	return driver.HasEvent(events(tb, kind, name), reason, parts...)
}

// get reads an object of the fleet namespace; nil when it does not exist.
func get(tb testing.TB, gvk schema.GroupVersionKind, name string) *unstructured.Unstructured {
	tb.Helper()
	u, err := drv.Lookup(context.Background(), gvk, ns, name)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// list lists the objects of a kind in the fleet namespace, by name.
func list(tb testing.TB, gvk schema.GroupVersionKind, labels map[string]string) map[string]*unstructured.Unstructured {
	return drv.ByName(tb, gvk, ns, labels)
}

// pool returns the Machines of a MachineDeployment by name.
func pool(tb testing.TB, md string) map[string]*unstructured.Unstructured {
	return list(tb, diff.GVKMachine, map[string]string{"cluster.x-k8s.io/deployment-name": md})
}

// runningUIDs are the UIDs of the Machines among ms that are Running with a Node and not being
// deleted.
func runningUIDs(ms map[string]*unstructured.Unstructured) []string {
	var out []string
	for _, m := range ms {
		if driver.IsRunning(m) {
			out = append(out, string(m.GetUID()))
		}
	}
	slices.Sort(out)
	return out
}
