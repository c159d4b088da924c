package capi

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/testenv"
)

const ns = "fleet-dev"

var (
	gvkCluster = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Cluster"}
	gvkMachine = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Machine"}
	gvkMD      = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineDeployment"}
)

// fleetRepo is a git repository holding testdata/fleet as a platform team pushes it.
func fleetRepo(tb testing.TB) (*testenv.GitRepo, map[string]string) {
	tb.Helper()
	files := map[string]string{}
	if err := filepath.WalkDir("testdata/fleet", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata", path)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return testenv.NewGitRepo(tb, files), files
}

// daemon is `driftd run` running in-process until the test ends.
type daemon struct {
	out *testenv.SyncBuffer
}

func startRun(tb testing.TB, args ...string) *daemon {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{out: &testenv.SyncBuffer{}}
	done := make(chan int, 1)
	go func() { done <- cli.Execute(ctx, append([]string{"run", "--log-development"}, args...), d.out, d.out) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			tb.Errorf("driftd run did not stop within 30s")
		}
		if tb.Failed() {
			tb.Logf("driftd run output:\n%s", d.out.String())
		}
	})
	return d
}

// machines returns the Machines of a cluster by name, with their phase.
func machines(tb testing.TB, cluster string) map[string]*unstructured.Unstructured {
	tb.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvkMachine.GroupVersion().WithKind("MachineList"))
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{"cluster.x-k8s.io/cluster-name": cluster}); err != nil {
		tb.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for i := range list.Items {
		out[list.Items[i].GetName()] = &list.Items[i]
	}
	return out
}

func phase(m *unstructured.Unstructured) string {
	p, _, _ := unstructured.NestedString(m.Object, "status", "phase")
	return p
}

func nodeName(m *unstructured.Unstructured) string {
	n, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name")
	return n
}

// running counts the Machines of a cluster that are Running with a Node, and all of them.
func running(tb testing.TB, cluster string) (int, int) {
	tb.Helper()
	ms := machines(tb, cluster)
	n := 0
	for _, m := range ms {
		if phase(m) == "Running" && nodeName(m) != "" && m.GetDeletionTimestamp() == nil {
			n++
		}
	}
	return n, len(ms)
}

// events returns driftd's Events on an object of the fleet namespace, as "Reason: note".
func events(tb testing.TB, kind, name string) []string {
	tb.Helper()
	return eventsIn(tb, ns, kind, name)
}

// eventsIn returns driftd's Events on an object of namespace, as "Reason: note".
func eventsIn(tb testing.TB, namespace, kind, name string) []string {
	tb.Helper()
	return env.Events(tb, namespace, kind, name)
}

// eventWith reports whether driftd's Events on the object hold one with reason whose note
// contains every part.
func eventWith(tb testing.TB, kind, name, reason string, parts ...string) bool {
	tb.Helper()
	return hasEvent(events(tb, kind, name), reason, parts...)
}

// hasEvent reports whether evs hold one with reason whose note contains every part.
func hasEvent(evs []string, reason string, parts ...string) bool {
	for _, e := range evs {
		if !strings.HasPrefix(e, reason+":") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(e, p)
		}
		if all {
			return true
		}
	}
	return false
}

// driftdEvents returns every Event driftd recorded in the fleet namespace, as "Kind/name Reason: note".
func driftdEvents(tb testing.TB) []string {
	tb.Helper()
	list := &eventsv1.EventList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.ReportingController == "driftd" {
			out = append(out, ev.Regarding.Kind+"/"+ev.Regarding.Name+" "+ev.Reason+": "+ev.Note)
		}
	}
	return out
}

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

// get reads an object of the fleet namespace; nil when it does not exist.
func get(tb testing.TB, gvk schema.GroupVersionKind, name string) *unstructured.Unstructured {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		tb.Fatal(err)
	}
	return u
}

// list lists the objects of a kind in the fleet namespace, by name.
func list(tb testing.TB, gvk schema.GroupVersionKind, labels map[string]string) map[string]*unstructured.Unstructured {
	tb.Helper()
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := env.Client.List(context.Background(), l, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		tb.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for i := range l.Items {
		out[l.Items[i].GetName()] = &l.Items[i]
	}
	return out
}

// pool returns the Machines of a MachineDeployment by name.
func pool(tb testing.TB, md string) map[string]*unstructured.Unstructured {
	return list(tb, gvkMachine, map[string]string{"cluster.x-k8s.io/deployment-name": md})
}

// runningUIDs are the UIDs of the Machines among ms that are Running with a Node and not being
// deleted.
func runningUIDs(ms map[string]*unstructured.Unstructured) []string {
	var out []string
	for _, m := range ms {
		if phase(m) == "Running" && nodeName(m) != "" && m.GetDeletionTimestamp() == nil {
			out = append(out, string(m.GetUID()))
		}
	}
	slices.Sort(out)
	return out
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
