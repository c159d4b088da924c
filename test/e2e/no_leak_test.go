package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

var gvkKCT = schema.GroupVersionKind{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"}

// leaks lists the secrets found in any of outputs.
func leaks(secrets []string, outputs map[string]string) []string {
	var found []string
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				found = append(found, name+" shows "+s)
			}
		}
	}
	return found
}

// everythingDriftdSaid is every Event driftd recorded in the namespaces, the status ConfigMap and
// the memo, as text.
func everythingDriftdSaid(tb testing.TB, namespaces ...string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, ns := range namespaces {
		evs := &eventsv1.EventList{}
		if err := env.Client.List(context.Background(), evs, client.InNamespace(ns)); err != nil {
			tb.Fatal(err)
		}
		b, _ := json.Marshal(evs)
		out["Events in "+ns] = string(b)
		cm := &corev1.ConfigMap{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: drv.StatusName(ns)}, cm); err == nil {
			b, _ := json.Marshal(cm)
			out["status ConfigMap in "+ns] = string(b)
		}
	}
	return out
}

// TestNoSecretReachesAReport: a repository reached with a token in its URL, holding a kubeadm
// bootstrap template with a private key and a password, and a generator that tries to read the
// cloud's metadata endpoint. Whatever driftd does with it — a correcting run, plan as table and
// JSON, the daemon's logs, Events, status and metrics, and a fetch that fails — no token, key,
// password or metadata answer appears anywhere, the metadata endpoint sees no request, and the
// file that tried is named.
func TestNoSecretReachesAReport(t *testing.T) {
	const token, gitKey, liveKey, passwd = "glpat-LEAKME-token", "KEYMATERIAL-LEAKME-git", "KEYMATERIAL-LEAKME-live", "$6$PASSWD-LEAKME"
	var metadataHits atomic.Int64
	metadata := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		metadataHits.Add(1)
		_, _ = w.Write([]byte("AccessKeyId: LEAKME-metadata"))
	}))
	defer metadata.Close()

	ns := "no-leak"
	files := fleet.AWS(ns)
	files["fleet/workers.yaml"] = replaceOnce(t, files["fleet/workers.yaml"], "      joinConfiguration:\n", `      files:
      - path: /etc/kubernetes/pki/ca.key
        content: `+gitKey+`
      users:
      - name: ops
        passwd: "`+passwd+`"
      joinConfiguration:
`)
	repo := testenv.NewGitRepo(t, files)
	url := strings.Replace(repo.ServeHTTP(t, "oauth2", token), "http://", "http://oauth2:"+token+"@", 1)
	args := []string{"--repo", url, "--ref", "main", "--path", "fleet", "--kubeconfig", env.KubeconfigFile(t), "--owner", ns, "--git-cache-dir", t.TempDir()}
	secrets := []string{token, gitKey, liveKey, "PASSWD-LEAKME", "LEAKME-metadata"}
	said := map[string]string{}
	drv.RunOnce(t, ns, args...)

	// Someone swaps the key in the cluster; driftd reports and corrects it.
	kct := drv.Get(t, gvkKCT, ns, "prod-md-0")
	fs, _, _ := unstructured.NestedSlice(kct.Object, "spec", "template", "spec", "files")
	fs[0].(map[string]any)["content"] = liveKey
	_ = unstructured.SetNestedSlice(kct.Object, fs, "spec", "template", "spec", "files")
	if err := env.Client.Update(context.Background(), kct, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	code, doc, stderr := drv.Plan(t, args...)
	if code != 2 || len(doc.Findings) != 1 || len(doc.Findings[0].Fields) != 1 ||
		doc.Findings[0].Fields[0].Path != "/spec/template/spec/files/0/content" || doc.Findings[0].Fields[0].Manager != "kubectl-edit" {
		t.Errorf("plan: exit %d, findings %+v; want the key's path, changed by kubectl-edit\n%s", code, doc.Findings, stderr)
	}
	_, said["plan -o json"], said["plan stderr"] = drv.Exec(context.Background(), append([]string{"plan", "-o", "json"}, args...)...)
	_, said["plan table"], _ = drv.Exec(context.Background(), append([]string{"plan"}, args...)...)
	metrics := testenv.FreeAddr(t)
	d := drv.Start(t, ns, append(args, "--interval", "300ms", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 30*time.Second, "the key corrected", func() bool {
		fs, _, _ := unstructured.NestedSlice(drv.Get(t, gvkKCT, ns, "prod-md-0").Object, "spec", "template", "spec", "files")
		return len(fs) == 1 && fs[0].(map[string]any)["content"] == gitKey
	})

	// The repository now also tries to read the metadata endpoint through a generator.
	files["fleet/kustomization.yaml"] += "configMapGenerator:\n- name: creds\n  files:\n  - creds=" + metadata.URL + "/latest/meta-data/iam/security-credentials/\n"
	repo.Commit(t, "steal the node's credentials", map[string]string{"fleet/kustomization.yaml": files["fleet/kustomization.yaml"]})
	testenv.Eventually(t, 30*time.Second, "the refused location named on the status ConfigMap", func() bool {
		return strings.Contains(strings.Join(drv.StatusEvents(t, ns), "\n"), "fleet/kustomization.yaml: configMapGenerator[0].files[0]: remote location")
	})
	code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
	if code != 1 || !strings.Contains(errOut, "fleet/kustomization.yaml") {
		t.Errorf("run --once over the generator: exit %d, want 1 naming the file\n%s", code, errOut)
	}
	said["run --once"] = out + errOut
	code, out, errOut = drv.Exec(context.Background(), append([]string{"plan", "-o", "json"}, args...)...)
	if code != 1 || !strings.Contains(out, "fleet/kustomization.yaml: configMapGenerator[0].files[0]") {
		t.Errorf("plan over the generator: exit %d, want 1 with the file and field among its errors\n%s%s", code, out, errOut)
	}
	said["plan over the generator"] = out + errOut

	// And the remote fails.
	breakRepo(t, repo)
	testenv.Eventually(t, 30*time.Second, "SourceFetchFailed on the status ConfigMap", func() bool {
		return driver.HasEvent(drv.StatusEvents(t, ns), "SourceFetchFailed")
	})
	_, out, errOut = drv.Exec(context.Background(), append([]string{"plan"}, args...)...)
	said["plan after the fetch failed"] = out + errOut
	if !strings.Contains(errOut, "REDACTED@127.0.0.1") {
		t.Errorf("the failed fetch does not name the repository without its token:\n%s", errOut)
	}
	_, said["metrics"] = httpGet(t, "http://"+metrics+"/metrics")
	said["daemon log"] = d.Out.String()
	for k, v := range everythingDriftdSaid(t, ns) {
		said[k] = v
	}

	if n := metadataHits.Load(); n != 0 {
		t.Errorf("the metadata endpoint answered %d requests", n)
	}
	if found := leaks(secrets, said); len(found) > 0 {
		t.Errorf("secrets leaked:\n%s", strings.Join(found, "\n"))
	}
}
