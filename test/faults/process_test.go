package faults

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
	"github.com/driftd/driftd/internal/testenv/image"
)

// system is the namespace of the driftd that keeps the fleet of ns (its lease, status, memo and
// inventory), which its installation creates, as config/ creates driftd-system.
func system(ns string) string { return ns + "-driftd" }

// daemonArgs are `driftd run`'s arguments for the fleet of ns (also its owner) in repo, reaching
// the API server through proxy, with its namespace system(ns), created here, after extra.
func daemonArgs(t *testing.T, ns string, repo *testenv.GitRepo, proxy *testenv.APIProxy, extra ...string) []string {
	t.Helper()
	return append([]string{"run", "--namespace", drv.Namespace(t, system(ns)), "--repo", repo.Dir, "--ref", "main", "--path", fleet.Dir,
		"--kubeconfig", proxy.KubeconfigFile(t), "--owner", ns, "--git-cache-dir", t.TempDir(),
		"--metrics-bind-address", "0"}, extra...)
}

// spawnImage starts the image's driftd with args as a process.
func spawnImage(t *testing.T, args ...string) *driver.Process {
	t.Helper()
	return driver.Spawn(t, image.Binary(t), args...)
}

// cycleDone reports whether p completed a cycle.
func cycleDone(p *driver.Process) bool {
	return strings.Contains(p.Out.String(), `"complete": true`)
}

func configMapExists(t *testing.T, ns, name string) bool {
	t.Helper()
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.ConfigMap{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestAKillBetweenTwoDeletionsOfAPrune: three ConfigMaps leave Git under --prune; driftd is killed
// with SIGKILL while its second deletion is on its way (held by the API proxy, so the kill lands
// between the two). The restarted driftd deletes the two that remain and writes nothing else.
func TestAKillBetweenTwoDeletionsOfAPrune(t *testing.T) {
	ns := "fault-kill-prune"
	old := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-1\ndata: {a: b}\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-2\ndata: {a: b}\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-3\ndata: {a: b}\n"
	repo := testenv.NewGitRepo(t, fleet.Prod(ns).Add("old.yaml", old).Files())
	proxy := env.NewAPIProxy(t)
	args := daemonArgs(t, ns, repo, proxy, "--prune", "--max-prune", "10", "--max-prune-percent", "100",
		"--interval", "1h", "--health-probe-bind-address", "0")
	bin := image.Binary(t)

	first := driver.Spawn(t, bin, args...)
	testenv.Eventually(t, 90*time.Second, "the first complete cycle", func() bool { return cycleDone(first) })
	first.Stop(30 * time.Second)

	repo.Commit(t, "retire the old ConfigMaps", map[string]string{
		fleet.Dir + "/old.yaml": testenv.Delete, fleet.Dir + "/kustomization.yaml": fleet.Prod(ns).Files()[fleet.Dir+"/kustomization.yaml"],
	})
	proxy.Reset()
	deletions := 0
	hold := proxy.Inject(&testenv.Fault{Times: 1, Delay: 10 * time.Minute, Match: func(r *http.Request) bool {
		if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/namespaces/"+ns+"/configmaps/old-") {
			deletions++
			return deletions == 2
		}
		return false
	}})
	second := driver.Spawn(t, bin, args...)
	testenv.Eventually(t, 60*time.Second, "the second deletion on its way", func() bool { return proxy.FaultHits(hold) == 1 })
	second.Kill()
	before := writes(proxy)
	t.Logf("writes of the killed driftd:\n  %s", strings.Join(before, "\n  "))
	gone := []string{}
	var left []string
	for _, name := range []string{"old-1", "old-2", "old-3"} {
		if configMapExists(t, ns, name) {
			left = append(left, name)
		} else {
			gone = append(gone, name)
		}
	}
	if len(gone) != 1 {
		t.Fatalf("deleted before the kill: %v, want exactly one (the kill did not land between two deletions)", gone)
	}
	if bad := unintended(proxy, bookkeeping(system(ns)), deleteOf(ns, gone...)); len(bad) > 0 {
		t.Errorf("the killed driftd wrote %v", bad)
	}

	proxy.Remove(hold)
	proxy.Reset()
	third := driver.Spawn(t, bin, args...)
	testenv.Eventually(t, 60*time.Second, "the restarted driftd to finish the prune", func() bool {
		return !configMapExists(t, ns, left[0]) && !configMapExists(t, ns, left[1])
	})
	testenv.Eventually(t, 30*time.Second, "its cycle to end", func() bool { return cycleDone(third) })
	third.Stop(30 * time.Second)
	t.Logf("writes of the restarted driftd:\n  %s", strings.Join(writes(proxy), "\n  "))
	if bad := unintended(proxy, bookkeeping(system(ns)), deleteOf(ns, left...)); len(bad) > 0 {
		t.Errorf("the restarted driftd wrote %v; want only the deletions of %v", bad, left)
	}
	for _, r := range proxy.Requests(deleteOf(ns, gone...)) {
		t.Errorf("the restarted driftd deleted %s again: %s %s", gone[0], r.Method, r.Path)
	}
}
