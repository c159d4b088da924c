package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/driftd/driftd/internal/testenv"
)

// overlay writes a kustomization, as a user writes one, on top of config/default with components,
// extra lines (a configMapGenerator replacing the configuration) and files beside it, and returns
// its folder.
func overlay(tb testing.TB, components []string, extra string, files map[string]string) string {
	tb.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	rel := func(p string) string { // kustomize takes no absolute path for a base or a component
		r, err := filepath.Rel(dir, filepath.Join(root, p))
		if err != nil {
			tb.Fatal(err)
		}
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + rel("config/default") + "\n"
	if len(components) > 0 {
		k += "components:\n"
		for _, c := range components {
			k += "- " + rel(filepath.Join("config/components", c)) + "\n"
		}
	}
	files["kustomization.yaml"] = k + extra
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	return testenv.Select(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
}

func containerOf(tb testing.TB, deployment *unstructured.Unstructured) map[string]any {
	tb.Helper()
	containers, _, _ := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		tb.Fatalf("Deployment %s has %d containers", deployment.GetName(), len(containers))
	}
	return containers[0].(map[string]any)
}

func argsOf(tb testing.TB, deployment *unstructured.Unstructured) []string {
	tb.Helper()
	args, _, _ := unstructured.NestedStringSlice(containerOf(tb, deployment), "args")
	return args
}

// TestEveryOverlayAndComponentRenders builds config/default, every sample and every component as
// `kubectl kustomize` does, and checks what a platform team relies on: the image pinned, labels
// and selectors per instance, a PodDisruptionBudget, topology spread, a NetworkPolicy,
// GOMEMLIMIT from the limit, the configuration in a ConfigMap named after its content, no
// placeholder Secret, and a default that reads no cloud and deletes nothing.
func TestEveryOverlayAndComponentRenders(t *testing.T) {
	objs := testenv.Kustomize(t, "config/default")
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		labels := o.GetLabels()
		if labels["app.kubernetes.io/name"] != "driftd" || labels["app.kubernetes.io/instance"] != "driftd" || labels["app.kubernetes.io/part-of"] != "driftd" {
			t.Errorf("%s %s labels %v lack app.kubernetes.io/name, instance or part-of", o.GetKind(), o.GetName(), labels)
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("config/default has no %s", k)
		}
	}
	if kinds["Secret"] != 0 {
		t.Error("config/default ships a Secret: a GitOps sync would overwrite the real one")
	}
	dep := byKind(objs, "Deployment")[0]
	c := containerOf(t, dep)
	if image := c["image"].(string); !strings.HasPrefix(image, "ghcr.io/driftd/driftd:v") && !strings.Contains(image, "@sha256:") {
		t.Errorf("image %q is not pinned", image)
	}
	env, _, _ := unstructured.NestedSlice(c, "env")
	if !strings.Contains(fmt.Sprint(env), "GOMEMLIMIT") || !strings.Contains(fmt.Sprint(env), "limits.memory") {
		t.Errorf("no GOMEMLIMIT from the memory limit: %v", env)
	}
	if spread, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "topologySpreadConstraints"); len(spread) == 0 {
		t.Error("no topology spread")
	}
	sel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "selector", "matchLabels")
	if sel["app.kubernetes.io/instance"] != "driftd" {
		t.Errorf("Deployment selector %v has no instance", sel)
	}
	cm := byKind(objs, "ConfigMap")[0]
	if !strings.HasPrefix(cm.GetName(), "driftd-config-") || cm.GetName() == "driftd-config" {
		t.Errorf("ConfigMap %s: want driftd-config-<hash> (a changed configuration rolls the Deployment)", cm.GetName())
	}
	if !strings.Contains(fmt.Sprint(dep.Object), cm.GetName()) {
		t.Errorf("the Deployment does not mount %s", cm.GetName())
	}
	var config map[string]any
	if err := yaml.Unmarshal([]byte(cm.Object["data"].(map[string]any)["config.yaml"].(string)), &config); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"provider", "prune", "cloud-writes"} {
		if _, on := config[key]; on {
			t.Errorf("the default configuration sets %s: it must be safe to apply as is", key)
		}
	}
	if args := strings.Join(argsOf(t, dep), " "); strings.Contains(args, "--prune") || strings.Contains(args, "--provider") {
		t.Errorf("the default Deployment prunes or reads a cloud: %s", args)
	}

	// Every component, on top of the default, and every sample.
	for _, tc := range []struct {
		dir  string
		want []string // args the Deployment gains
	}{
		{overlay(t, []string{"prune"}, "", map[string]string{}), []string{"--prune"}},
		{overlay(t, []string{"aws", "replace"}, "", map[string]string{}), []string{"--provider=aws"}},
		{overlay(t, []string{"vsphere"}, "", map[string]string{}), []string{"--provider=vsphere"}},
		{overlay(t, []string{"detect"}, "", map[string]string{}), []string{"--mode=detect"}},
		{overlay(t, []string{"secrets", "configmaps", "prometheus", "grafana"}, "", map[string]string{}), nil},
		{"config/samples/production", []string{"--prune", "--provider=aws"}},
		{"config/samples/shard-a", []string{"--shard=fleet.example.com/shard=a", "--owner=driftd-shard-a"}},
	} {
		objs := testenv.Kustomize(t, tc.dir)
		args := strings.Join(argsOf(t, byKind(objs, "Deployment")[0]), " ")
		for _, w := range tc.want {
			if !strings.Contains(args, w) {
				t.Errorf("%s: the Deployment's args %q lack %s", tc.dir, args, w)
			}
		}
	}
	dash := testenv.Kustomize(t, overlay(t, []string{"grafana"}, "", map[string]string{}))
	if cms := testenv.Select(dash, func(o *unstructured.Unstructured) bool { return o.GetLabels()["grafana_dashboard"] == "1" }); len(cms) != 1 {
		t.Error("the grafana component has no dashboard ConfigMap for Grafana's sidecar")
	}
}

// TestTwoInstancesInOneNamespaceDoNotOverlap: config/default and the shard-a sample applied side by
// side (a dry run, with what both create): no object of one is the other's, and neither's
// selectors select the other's pods.
func TestTwoInstancesInOneNamespaceDoNotOverlap(t *testing.T) {
	ctx := context.Background()
	a := testenv.Kustomize(t, "config/default")
	b := testenv.Kustomize(t, "config/samples/shard-a")
	names := map[string]bool{}
	for _, o := range a {
		names[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	for _, o := range b {
		if o.GetKind() == "Namespace" {
			t.Errorf("the shard renders Namespace %s; it runs beside config/default", o.GetName())
		}
		if names[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] {
			t.Errorf("%s %s/%s is in both", o.GetKind(), o.GetNamespace(), o.GetName())
		}
	}
	podsOf := func(objs []*unstructured.Unstructured) map[string]string {
		labels, _, _ := unstructured.NestedStringMap(byKind(objs, "Deployment")[0].Object, "spec", "template", "metadata", "labels")
		return labels
	}
	matches := func(sel, labels map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	for _, side := range []struct {
		name         string
		objs, others []*unstructured.Unstructured
	}{{"default", a, b}, {"shard-a", b, a}} {
		others := podsOf(side.others)
		for _, o := range side.objs {
			var sel map[string]string
			switch o.GetKind() {
			case "Deployment", "PodDisruptionBudget":
				sel, _, _ = unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
			case "Service":
				sel, _, _ = unstructured.NestedStringMap(o.Object, "spec", "selector")
			case "NetworkPolicy":
				sel, _, _ = unstructured.NestedStringMap(o.Object, "spec", "podSelector", "matchLabels")
			default:
				continue
			}
			if matches(sel, others) {
				t.Errorf("%s's %s %s selects the other instance's pods (%v)", side.name, o.GetKind(), o.GetName(), sel)
			}
		}
	}
	env.Apply(t, "kubectl", byKind(a, "Namespace"))
	var failed []string
	for _, o := range append(a, b...) {
		if o.GetKind() == "ClusterRole" && o.Object["aggregationRule"] != nil {
			continue // its rules are the aggregation controller's to write
		}
		if err := env.Client.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership, client.DryRunAll); err != nil {
			failed = append(failed, fmt.Sprintf("%s %s: %v", o.GetKind(), o.GetName(), err))
		}
	}
	sort.Strings(failed)
	for _, f := range failed {
		t.Error(f)
	}
}
