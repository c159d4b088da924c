package capi

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

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
