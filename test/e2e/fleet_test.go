package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// fleetFiles is a small fleet of one AWS cluster in namespace ns, the Namespace included: what a
// platform team keeps in Git. Tests start from a management cluster that does not have it.
func fleetFiles(ns string) map[string]string {
	return map[string]string{
		"fleet/kustomization.yaml": kustomization(ns, "cluster.yaml", "workers.yaml"),
		"fleet/namespace.yaml":     namespaceYAML(ns),
		"fleet/cluster.yaml": `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: prod
spec:
  clusterNetwork:
    pods:
      cidrBlocks: ["192.168.0.0/16"]
  controlPlaneRef:
    apiGroup: controlplane.cluster.x-k8s.io
    kind: KubeadmControlPlane
    name: prod-cp
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: AWSCluster
    name: prod
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSCluster
metadata:
  name: prod
spec:
  region: eu-west-1
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata:
  name: prod-cp
spec:
  replicas: 3
  version: v1.34.1
  machineTemplate:
    spec:
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: AWSMachineTemplate
        name: prod-cp
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachineTemplate
metadata:
  name: prod-cp
spec:
  template:
    spec:
      instanceType: m6i.xlarge
      iamInstanceProfile: control-plane.cluster-api-provider-aws.sigs.k8s.io
`,
		"fleet/workers.yaml": `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: prod-md-0
spec:
  clusterName: prod
  replicas: 3
  selector:
    matchLabels:
      pool: md-0
  template:
    metadata:
      labels:
        pool: md-0
    spec:
      clusterName: prod
      version: v1.34.1
      bootstrap:
        configRef:
          apiGroup: bootstrap.cluster.x-k8s.io
          kind: KubeadmConfigTemplate
          name: prod-md-0
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: AWSMachineTemplate
        name: prod-md-0
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachineTemplate
metadata:
  name: prod-md-0
spec:
  template:
    spec:
      instanceType: m6i.large
      iamInstanceProfile: nodes.cluster-api-provider-aws.sigs.k8s.io
---
apiVersion: bootstrap.cluster.x-k8s.io/v1beta2
kind: KubeadmConfigTemplate
metadata:
  name: prod-md-0
spec:
  template:
    spec:
      joinConfiguration:
        nodeRegistration:
          kubeletExtraArgs:
          - name: cloud-provider
            value: external
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineHealthCheck
metadata:
  name: prod-md-0
spec:
  clusterName: prod
  selector:
    matchLabels:
      pool: md-0
`,
	}
}

// kustomization is a fleet folder's kustomization.yaml: its Namespace (namespace.yaml) and the
// resources, all in namespace ns.
func kustomization(ns string, resources ...string) string {
	return "namespace: " + ns + "\nresources:\n- namespace.yaml\n- " + strings.Join(resources, "\n- ") + "\n"
}

// installNamespace creates driftd's own namespace, as applying config/default does (there it is
// driftd-system; here each test has its own, so that tests share no lease or status ConfigMap).
// The fleet's namespaces come from the fleet repository, never from here.
func installNamespace(tb testing.TB, name string) string {
	tb.Helper()
	if err := env.InstallNamespace(context.Background(), name); err != nil {
		tb.Fatal(err)
	}
	return name
}

// namespaceYAML is the Namespace ns as a fleet repository holds it.
func namespaceYAML(ns string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"
}

// driftd runs a driftd command in-process and returns its exit code, stdout and stderr.
func driftd(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut testenv.SyncBuffer
	code := cli.Execute(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// commonArgs are the flags every test passes: the test bed's kubeconfig and an owner of its own,
// so that tests sharing the API server never see each other's objects as orphans.
func commonArgs(tb testing.TB, repo, owner string) []string {
	return []string{"--repo", repo, "--ref", "main", "--path", "fleet", "--kubeconfig", env.KubeconfigFile(tb),
		"--owner", owner, "--git-cache-dir", tb.TempDir()}
}

// planDoc is `plan -o json`.
type planDoc struct {
	Revision string         `json:"revision"`
	Findings []diff.Finding `json:"findings"`
	Errors   []string       `json:"errors"`
}

func plan(tb testing.TB, args ...string) (int, planDoc, string) {
	tb.Helper()
	code, out, errOut := driftd(context.Background(), append([]string{"plan", "-o", "json"}, args...)...)
	var doc planDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		tb.Fatalf("plan printed no JSON (exit %d): %v\nstdout: %s\nstderr: %s", code, err, out, errOut)
	}
	return code, doc, errOut
}

// runOnce runs one correcting cycle with the status ConfigMap in ns, failing the test if it
// does not exit 0.
func runOnce(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	code, out, errOut := driftd(context.Background(), append([]string{"run", "--once", "--log-development", "--namespace", ns}, args...)...)
	if code != 0 {
		tb.Fatalf("run --once exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	return out + errOut
}

var (
	gvkMD  = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineDeployment"}
	gvkAMT = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachineTemplate"}
)

func get(tb testing.TB, gvk schema.GroupVersionKind, ns, name string) *unstructured.Unstructured {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		tb.Fatalf("getting %s %s/%s: %v", gvk.Kind, ns, name, err)
	}
	return u
}

// scaleAs sets a MachineDeployment's replicas as another field manager would (kubectl scale).
func scaleAs(tb testing.TB, manager, ns, name string, replicas int64) {
	tb.Helper()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkMD)
	u.SetNamespace(ns)
	u.SetName(name)
	if err := env.Client.Patch(context.Background(), u, client.RawPatch("application/merge-patch+json", patch), client.FieldOwner(manager)); err != nil {
		tb.Fatalf("scaling %s/%s as %s: %v", ns, name, manager, err)
	}
}

func replicas(tb testing.TB, ns, name string) int64 {
	tb.Helper()
	r, _, _ := unstructured.NestedInt64(get(tb, gvkMD, ns, name).Object, "spec", "replicas")
	return r
}

// resourceVersions returns the resourceVersion of every object of the kinds in ns.
func resourceVersions(tb testing.TB, ns string, gvks ...schema.GroupVersionKind) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, gvk := range gvks {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			tb.Fatal(err)
		}
		for _, item := range list.Items {
			out[gvk.Kind+"/"+item.GetName()] = item.GetResourceVersion()
		}
	}
	return out
}

var fleetKinds = []schema.GroupVersionKind{
	{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Cluster"},
	{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSCluster"},
	{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlane"},
	gvkAMT, gvkMD,
	{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"},
	{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineHealthCheck"},
	{Group: "", Version: "v1", Kind: "Secret"},
	{Group: "", Version: "v1", Kind: "ConfigMap"},
}

// statusName is the name of the status ConfigMap of the one driftd of a test's namespace (whatever
// its --owner), or "".
func statusName(tb testing.TB, ns string) string {
	tb.Helper()
	list := &corev1.ConfigMapList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		tb.Fatal(err)
	}
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "driftd-status-") {
			return cm.Name
		}
	}
	return ""
}

func statusExists(ns string) bool {
	list := &corev1.ConfigMapList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		return false
	}
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "driftd-status-") {
			return true
		}
	}
	return false
}

// statusEvents are the Events on the status ConfigMap of the driftd of namespace ns.
func statusEvents(tb testing.TB, ns string) []string {
	tb.Helper()
	list := &eventsv1.EventList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Regarding.Kind == "ConfigMap" && strings.HasPrefix(ev.Regarding.Name, "driftd-status-") && ev.ReportingController == "driftd" {
			out = append(out, ev.Reason+": "+ev.Note)
		}
	}
	return out
}

// events returns "Reason: note" of the Events recorded on an object, oldest first.
func events(tb testing.TB, ns, kind, name string) []string {
	tb.Helper()
	return env.Events(tb, ns, kind, name)
}

func hasReason(evs []string, reason string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e, reason+":") {
			return true
		}
	}
	return false
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
