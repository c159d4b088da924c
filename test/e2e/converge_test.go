package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestRunCreatesAFleetWithItsNamespacesFromAnEmptyCluster: the usual repository layout, a
// Namespace per environment next to what lives in it, in one commit. One cycle of `driftd run`
// (the interval is an hour) creates all of it.
func TestRunCreatesAFleetWithItsNamespacesFromAnEmptyCluster(t *testing.T) {
	prod, staging := "converge-prod", "converge-staging"
	files := map[string]string{"fleet/kustomization.yaml": "resources:\n- production\n- staging\n"}
	for dir, ns := range map[string]string{"production": prod, "staging": staging} {
		for path, content := range fleet.AWS(ns) {
			files[strings.Replace(path, "fleet/", "fleet/"+dir+"/", 1)] = content
		}
	}
	repo := testenv.NewGitRepo(t, files)
	system := drv.Namespace(t, "converge-system")
	metrics := testenv.FreeAddr(t)
	drv.Start(t, system, append(drv.Args(t, repo.Dir, "converge"), "--interval", "1h", "--metrics-bind-address", metrics)...)

	testenv.WaitForCycles(t, metrics, 1, time.Minute)
	for _, ns := range []string{prod, staging} {
		for _, gvk := range fleetKinds[:7] {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
			if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil || len(list.Items) == 0 {
				t.Errorf("after the first cycle there is no %s in %s (%v)", gvk.Kind, ns, err)
			}
		}
		if r := drv.Replicas(ns, "prod-md-0"); r != 3 {
			t.Errorf("MachineDeployment %s/prod-md-0 has %d replicas after the first cycle, want 3", ns, r)
		}
	}
	if n := testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count"); n != 1 {
		t.Errorf("%v cycles ran; the fleet must converge in the first", n)
	}
}

// TestRunCreatesTheExampleFleetFromAnEmptyCluster: examples/fleet-repo as a user pushes it
// (its namespaces renamed so that tests share nothing) is created whole by the first cycle.
func TestRunCreatesTheExampleFleetFromAnEmptyCluster(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rename := strings.NewReplacer("fleet-production", "example-production", "fleet-staging", "example-staging")
	example, err := fleet.ReadDir(filepath.Join(root, "examples", "fleet-repo"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for name, content := range example {
		files[name] = rename.Replace(content)
	}
	repo := testenv.NewGitRepo(t, files)
	want, err := render.Render(repo.Dir, "clusters", render.Options{})
	if err != nil || want.Partial {
		t.Fatalf("rendering the example: %v %v", err, want.Errors)
	}
	system := drv.Namespace(t, "example-system")
	metrics := testenv.FreeAddr(t)
	drv.Start(t, system, "--repo", repo.Dir, "--ref", "main", "--path", "clusters", "--kubeconfig", env.KubeconfigFile(t),
		"--owner", "example", "--git-cache-dir", t.TempDir(), "--interval", "1h", "--metrics-bind-address", metrics)

	testenv.WaitForCycles(t, metrics, 1, 2*time.Minute)
	for _, o := range want.Objects {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(o.Unstructured), live); err != nil {
			t.Errorf("%s: %s %s/%s was not created by the first cycle: %v", o.File, o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	if n := testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count"); n != 1 {
		t.Errorf("%v cycles ran; the example fleet must converge in the first", n)
	}
}
