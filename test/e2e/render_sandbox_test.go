package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/egress"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fixture"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// objectsHolding lists the ConfigMaps and Secrets of ns whose content holds any of secrets.
func objectsHolding(tb testing.TB, ns string, secrets ...string) []string {
	tb.Helper()
	var found []string
	cms := &corev1.ConfigMapList{}
	secretList := &corev1.SecretList{}
	for _, list := range []client.ObjectList{cms, secretList} {
		if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			tb.Fatal(err)
		}
	}
	check := func(kind, name, content string) {
		for _, s := range secrets {
			if strings.Contains(content, s) {
				found = append(found, kind+" "+name+" holds "+s)
			}
		}
	}
	for _, cm := range cms.Items {
		check("ConfigMap", cm.Name, fmt.Sprint(cm.Data, cm.BinaryData))
	}
	for _, s := range secretList.Items {
		check("Secret", s.Name, fmt.Sprint(s.Data, s.StringData))
	}
	return found
}

// TestTheRenderReachesNothingOutsideTheCheckout: a fleet repository that tries every way seen to
// make kustomize fetch a metadata endpoint — a generator spelled in another letter case, builtin
// plugin configurations in a file and inline — and to read the checkout's own .git (where the
// repository URL with its token is kept) through a symlink. Applied by `run --once` over smart
// HTTP with a token: the endpoint sees no connection, nothing fetched or read from .git reaches the
// cluster, each attempt is named with its file and field, and the rest of the fleet is applied.
func TestTheRenderReachesNothingOutsideTheCheckout(t *testing.T) {
	const token = "glpat-LEAKME-render-token"
	metadata := fixture.Listen(t)
	url := metadata.URL
	ns := "render-ssrf"
	files := fleet.AWS(ns)
	files["fleet/kustomization.yaml"] = fleet.Kustomization(ns, "cluster.yaml", "workers.yaml", "leak") + `ConfigMapGenerator:
- Name: creds
  Files:
  - creds=` + url + `
generators:
- builtin-generator.yaml
- |
  apiVersion: builtin
  kind: SecretGenerator
  metadata:
    name: stolen-inline
  envs:
  - ` + url + `
`
	files["fleet/builtin-generator.yaml"] = "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: stolen-file\nfiles:\n- creds=" + url + "\n"
	files["fleet/leak/kustomization.yaml"] = "configMapGenerator:\n- name: repo-config\n  files:\n  - gitcfg\n"
	files["fleet/leak/gitcfg"] = testenv.Symlink + "../../.git/config"
	repo := testenv.NewGitRepo(t, files)
	remote := strings.Replace(repo.ServeHTTP(t, "fleet", token), "http://", "http://fleet:"+token+"@", 1)
	drv.Namespace(t, ns)

	code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--log-development", "--namespace", ns}, drv.Args(t, remote, ns)...)...)
	if code != 1 {
		t.Errorf("run --once exited %d, want 1 (parts refused)", code)
	}
	if n := metadata.Connections(); n != 0 {
		t.Errorf("the metadata endpoint saw %d connections", n)
	}
	all := out + errOut
	for _, want := range []string{
		"fleet/kustomization.yaml: configMapGenerator[0].files[0]: remote location",
		"fleet/kustomization.yaml: generators[0]: fleet/builtin-generator.yaml: document 1 (ConfigMapGenerator): files[0]: remote location",
		"fleet/kustomization.yaml: generators[1]: document 1 (SecretGenerator): envs[0]: remote location",
		"fleet/leak/gitcfg: symlink points into the repository's .git folder",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the output does not say %q:\n%s", want, all)
		}
	}
	for _, name := range []string{"creds", "repo-config", "stolen-file"} {
		if drv.Exists(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, ns, name) {
			t.Errorf("ConfigMap %s was applied", name)
		}
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "stolen-inline"}, &corev1.Secret{}); err == nil {
		t.Error("Secret stolen-inline was applied")
	}
	if found := objectsHolding(t, ns, "LEAKME", token); len(found) > 0 {
		t.Errorf("the cluster holds what the render must not read: %v", found)
	}
	if strings.Contains(all, token) {
		t.Error("the output shows the repository token")
	}
	if drv.Replicas(ns, "prod-md-0") != 3 {
		t.Error("the rest of the fleet was not applied")
	}
}

// peakRSS is this process' peak resident set (VmHWM).
func peakRSS(tb testing.TB) int64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// TestAYAMLAliasBombIsRefusedNamingTheFile: a resource file of under 1 KiB whose aliases expand to
// 10^9 strings. plan refuses that file by name, renders the rest, exits 1 (not 2, as if nothing
// were wrong), and neither driftd's process nor its render child takes the memory the expansion
// would.
func TestAYAMLAliasBombIsRefusedNamingTheFile(t *testing.T) {
	bomb := fixture.AliasBomb()
	if len(bomb) >= 1024 {
		t.Fatalf("the bomb is %d bytes", len(bomb))
	}
	ns := "render-bomb"
	files := fleet.Prod(ns).Add("bomb.yaml", bomb).Files()
	repo := testenv.NewGitRepo(t, files)

	before := peakRSS(t)
	code, doc, errOut := drv.Plan(t, append(drv.Args(t, repo.Dir, ns), "--render-max-memory", "256Mi")...)
	if grew := peakRSS(t) - before; grew > 128<<20 {
		t.Errorf("driftd's peak memory grew by %d MiB", grew>>20)
	}
	if code != 1 {
		t.Errorf("plan exited %d, want 1", code)
	}
	msg := strings.Join(doc.Errors, "\n") + errOut
	if !strings.Contains(msg, "fleet/bomb.yaml: document 1: its YAML aliases expand to more than 100000 nodes") {
		t.Errorf("the error does not name the file and the budget:\n%s", msg)
	}
	if doc.Finding("MachineDeployment", "prod-md-0") == nil {
		t.Error("the rest of the fleet was not compared")
	}
}

// TestARenderThatNeverReturnsHoldsBackNoLaterCommit: a commit whose render never returns (a test
// hook blocks the render child) is stopped with RenderFailed saying so — a new commit renders in
// the background, where --render-timeout counts CPU time and one blocked on nothing is stopped at
// three times it on the clock — the last good revision stays, and the next commit is applied
// within two cycles of being pushed.
func TestARenderThatNeverReturnsHoldsBackNoLaterCommit(t *testing.T) {
	ns := "render-hang"
	files := fleet.AWS(ns)
	repo := testenv.NewGitRepo(t, files)
	metrics := testenv.FreeAddr(t)
	t.Setenv("DRIFTD_RENDER_TEST_HOOK", "block:fleet/HANG")
	drv.Namespace(t, ns)
	drv.Start(t, ns, append(drv.Args(t, repo.Dir, ns), "--interval", "1s", "--render-timeout", "3s", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 60*time.Second, "the fleet created", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })

	repo.Commit(t, "a commit whose render hangs", map[string]string{
		"fleet/HANG":         "",
		"fleet/workers.yaml": replaceOnce(t, files["fleet/workers.yaml"], "replicas: 3", "replicas: 4"),
	})
	testenv.Eventually(t, 60*time.Second, "RenderFailed for the stopped render", func() bool {
		for _, e := range drv.StatusEvents(t, ns) {
			if strings.HasPrefix(e, "RenderFailed:") && strings.Contains(e, "stopped at its deadline of 9s on the clock in the background (3× --render-timeout)") {
				return true
			}
		}
		return false
	})
	if r := drv.Replicas(ns, "prod-md-0"); r != 3 {
		t.Fatalf("replicas %d while the render hung, want the last good revision's 3", r)
	}

	cycles := testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count")
	repo.Commit(t, "the next commit", map[string]string{
		"fleet/HANG":         testenv.Delete,
		"fleet/workers.yaml": replaceOnce(t, files["fleet/workers.yaml"], "replicas: 3", "replicas: 5"),
	})
	testenv.Eventually(t, 60*time.Second, "the next commit applied", func() bool { return drv.Replicas(ns, "prod-md-0") == 5 })
	if n := testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count") - cycles; n > 2 {
		t.Errorf("the next commit was applied after %v completed cycles, want at most 2", n)
	}
}

// TestInsideTheDaemonTheDefaultHTTPClientSendsNothing: while driftd runs, Go's default HTTP client
// of its process refuses every request, naming it; nothing reaches the listener.
func TestInsideTheDaemonTheDefaultHTTPClientSendsNothing(t *testing.T) {
	metadata := fixture.Listen(t)
	url := metadata.URL
	ns := "default-client"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	drv.Namespace(t, ns)
	drv.Start(t, ns, append(drv.Args(t, repo.Dir, ns), "--interval", "1h")...)
	testenv.Eventually(t, 60*time.Second, "the daemon running", func() bool { return drv.Watching(ns) })
	_, err := http.Get(url)
	if !errors.Is(err, egress.ErrDefaultTransport) || !strings.Contains(err.Error(), url) {
		t.Errorf("http.Get in the daemon's process = %v, want a refusal naming %s", err, url)
	}
	if n := metadata.Connections(); n != 0 {
		t.Errorf("the listener saw %d connections", n)
	}
}
