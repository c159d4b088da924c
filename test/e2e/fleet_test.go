package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

var (
	gvkAMT = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachineTemplate"}
)

var fleetKinds = []schema.GroupVersionKind{
	{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Cluster"},
	{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSCluster"},
	{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlane"},
	gvkAMT, diff.GVKMachineDeployment,
	{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"},
	{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineHealthCheck"},
	{Group: "", Version: "v1", Kind: "Secret"},
	{Group: "", Version: "v1", Kind: "ConfigMap"},
}

// replaceOnce replaces old with new in s, failing the test if old is not in s exactly once.
func replaceOnce(tb testing.TB, s, old, new string) string {
	tb.Helper()
	if strings.Count(s, old) != 1 {
		tb.Fatalf("fixture: %q occurs %d times", old, strings.Count(s, old))
	}
	return strings.Replace(s, old, new, 1)
}

// breakRepo makes the repository unreadable, as a server that lost it would.
func breakRepo(tb testing.TB, repo *testenv.GitRepo) {
	tb.Helper()
	if err := os.Rename(filepath.Join(repo.Dir, ".git"), filepath.Join(repo.Dir, ".git-gone")); err != nil {
		tb.Fatal(err)
	}
}

// applied is the AWS fleet of ns in a Git repository, created by one `run --once` with
// drv.Args and extra: what most tests start from. It returns the repository, its files and the
// arguments.
func applied(t *testing.T, ns string, extra ...string) (*testenv.GitRepo, map[string]string, []string) {
	t.Helper()
	files := fleet.AWS(ns)
	repo := testenv.NewGitRepo(t, files)
	args := append(drv.Args(t, repo.Dir, ns), extra...)
	drv.RunOnce(t, ns, args...)
	return repo, files, args
}
