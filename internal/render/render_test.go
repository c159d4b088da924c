package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

func md(name string, replicas int) string {
	return fmt.Sprintf("apiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineDeployment\nmetadata:\n  name: %s\nspec:\n  clusterName: c\n  replicas: %d\n", name, replicas)
}

// names lists "Kind/namespace/name file" for each object, sorted.
func names(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()+" "+o.File)
	}
	sort.Strings(out)
	return out
}

func TestRenderOverlaysRecordsFilesAndRemovesOrigin(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"base/kustomization.yaml":          "resources: [md.yaml]\n",
		"base/md.yaml":                     md("workers", 2),
		"clusters/prod/kustomization.yaml": "namespace: prod\nresources: [../../base, extra.yaml]\npatches:\n- target: {kind: MachineDeployment, name: workers}\n  patch: |\n    - op: replace\n      path: /spec/replicas\n      value: 5\n",
		"clusters/prod/extra.yaml":         md("gpu", 1),
	})
	res, err := Render(root, "clusters/prod", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"MachineDeployment/prod/gpu clusters/prod/extra.yaml",
		"MachineDeployment/prod/workers base/md.yaml",
	}
	if diff := cmp.Diff(want, names(res.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	for _, o := range res.Objects {
		if _, ok := o.GetAnnotations()[originAnnotation]; ok {
			t.Errorf("%s still carries %s", o.GetName(), originAnnotation)
		}
		if o.GetName() == "workers" {
			if got, _, _ := unstructuredInt(o, "spec", "replicas"); got != 5 {
				t.Errorf("patched replicas = %d, want 5", got)
			}
		}
	}
	if res.Partial || len(res.Errors) > 0 {
		t.Errorf("a clean render is partial=%v with errors %v", res.Partial, res.Errors)
	}
}

func TestRenderWithoutKustomizationListsTheYAMLFiles(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"fleet/a/md.yaml":   md("a", 1),
		"fleet/b/md.yml":    md("b", 1),
		"fleet/README.md":   "not a manifest",
		"fleet/empty/.keep": "",
	})
	res, err := Render(root, "fleet", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"MachineDeployment//a fleet/a/md.yaml", "MachineDeployment//b fleet/b/md.yml"}
	if diff := cmp.Diff(want, names(res.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestRenderIsolatesBrokenParts(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    []string
		errWant string
	}{
		{
			name: "malformed YAML in one cluster",
			files: map[string]string{
				"kustomization.yaml":            "resources: [clusters/a, clusters/b]\nlabels: [{pairs: {fleet: eu}}]\n",
				"clusters/a/kustomization.yaml": "resources: [md.yaml]\n",
				"clusters/a/md.yaml":            md("a", 1),
				"clusters/b/kustomization.yaml": "resources: [md.yaml, broken.yaml]\n",
				"clusters/b/md.yaml":            md("b", 1),
				"clusters/b/broken.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
			},
			want:    []string{"MachineDeployment//a clusters/a/md.yaml", "MachineDeployment//b clusters/b/md.yaml"},
			errWant: "clusters/b/broken.yaml",
		},
		{
			name: "object without a name",
			files: map[string]string{
				"kustomization.yaml": "resources: [good.yaml, nameless.yaml]\n",
				"good.yaml":          md("good", 1),
				"nameless.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
			},
			want:    []string{"MachineDeployment//good good.yaml"},
			errWant: "nameless.yaml: document 1: ConfigMap has no metadata.name",
		},
		{
			name: "escape with ../ out of the repository",
			files: map[string]string{
				"kustomization.yaml": "resources: [good.yaml, ../../etc/passwd]\n",
				"good.yaml":          md("good", 1),
			},
			want:    []string{"MachineDeployment//good good.yaml"},
			errWant: "passwd",
		},
		{
			name: "remote base",
			files: map[string]string{
				"kustomization.yaml": "resources:\n- good.yaml\n- https://github.com/example/fleet//base?ref=main\n",
				"good.yaml":          md("good", 1),
			},
			want:    []string{"MachineDeployment//good good.yaml"},
			errWant: `resources[1]: remote location "https://github.com/example/fleet//base?ref=main" refused`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Render(fixture.WriteTree(t, tt.files), "", Options{})
			if err != nil {
				t.Fatalf("Render = %v, want a partial render", err)
			}
			if diff := cmp.Diff(tt.want, names(res.Objects)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if !res.Partial {
				t.Error("result not marked partial")
			}
			if got := errors.Join(res.Errors...); got == nil || !strings.Contains(got.Error(), tt.errWant) {
				t.Errorf("errors = %v, want one naming %q", got, tt.errWant)
			}
		})
	}
}

func TestRenderRefusesSymlinksOutOfTheRepository(t *testing.T) {
	outside := fixture.WriteTree(t, map[string]string{"secret.yaml": md("stolen", 1)})
	root := fixture.WriteTree(t, map[string]string{
		"kustomization.yaml": "resources: [good.yaml, link.yaml]\n",
		"good.yaml":          md("good", 1),
		"inner.yaml":         md("inner", 1),
	})
	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(root, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	res, err := Render(root, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"MachineDeployment//good good.yaml"}, names(res.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if got := errors.Join(res.Errors...); got == nil || !strings.Contains(got.Error(), "link.yaml: symlink points outside the repository") {
		t.Errorf("errors = %v, want the refused symlink named", got)
	}

	t.Run("a symlink inside the repository is followed", func(t *testing.T) {
		if err := os.Remove(filepath.Join(root, "link.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("inner.yaml", filepath.Join(root, "link.yaml")); err != nil {
			t.Fatal(err)
		}
		res, err := Render(root, "", Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"MachineDeployment//good good.yaml", "MachineDeployment//inner link.yaml"}
		if diff := cmp.Diff(want, names(res.Objects)); diff != "" {
			t.Errorf("objects (-want +got):\n%s", diff)
		}
	})
}

func TestRenderFailures(t *testing.T) {
	t.Run("empty render is refused", func(t *testing.T) {
		_, err := Render(fixture.WriteTree(t, map[string]string{"kustomization.yaml": "resources: []\n"}), "", Options{})
		if !errors.Is(err, ErrEmptyRender) {
			t.Fatalf("Render of an empty kustomization = %v, want ErrEmptyRender", err)
		}
	})
	t.Run("a broken root kustomization names it", func(t *testing.T) {
		_, err := Render(fixture.WriteTree(t, map[string]string{
			"kustomization.yaml": "resources: [md.yaml]\npatches:\n- path: missing-patch.yaml\n",
			"md.yaml":            md("a", 1),
		}), "", Options{})
		if err == nil || !strings.Contains(err.Error(), "missing-patch.yaml") {
			t.Fatalf("Render = %v, want an error naming missing-patch.yaml", err)
		}
	})
	t.Run("path that is not a folder", func(t *testing.T) {
		_, err := Render(fixture.WriteTree(t, map[string]string{"md.yaml": md("a", 1)}), "clusters/nope", Options{})
		if err == nil || !strings.Contains(err.Error(), "clusters/nope") {
			t.Fatalf("Render = %v, want an error naming the path", err)
		}
	})
}

func unstructuredInt(o Object, fields ...string) (int64, bool, error) {
	return unstructured.NestedInt64(o.Object, fields...)
}

// TestRenderedObjectsAreKustomizesOwn: the render reads each object from kustomize's YAML node in
// place; what it gives is what kustomize's own JSON of the object says (less the origin
// annotation), for scalars of every kind YAML resolves, patched values, anchors and merge keys.
func TestRenderedObjectsAreKustomizesOwn(t *testing.T) {
	files := map[string]string{
		"kustomization.yaml": "resources: [a.yaml]\nlabels: [{pairs: {tier: gold}, includeSelectors: true}]\npatches:\n- target: {kind: ConfigMap}\n  patch: |\n    - op: add\n      path: /data/patched\n      value: \"007\"\n",
		"a.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: scalars
  annotations: {on: "yes", date: 2024-01-02, n: "1"}
data: &d
  zero: "0"
  octal: "0o17"
  float: "1.50"
  multi: |
    line one
    line two
binaryData: {}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata: {name: md}
spec:
  replicas: 3
  minReadySeconds: 0x10
  template:
    spec:
      base: &base {cpu: 2, ratio: 0.5, big: 12345678901234, on: true, none: null, when: 2024-01-02T03:04:05Z, e: 1e3, list: [1, "2", 3.0]}
      other:
        <<: *base
        cpu: 4
`,
	}
	root := fixture.WriteTree(t, files)
	res, err := Render(root, "", Options{})
	if err != nil || len(res.Objects) != 2 {
		t.Fatalf("render: %v, %d objects", err, len(res.Objects))
	}
	want := map[string]map[string]any{}
	for _, o := range kustomizeBuild(t, root) {
		want[(&unstructured.Unstructured{Object: o}).GetName()] = o
	}
	for _, o := range res.Objects {
		if diff := cmp.Diff(want[o.GetName()], o.Object); diff != "" {
			t.Errorf("%s (-kustomize's JSON +rendered):\n%s", o.GetName(), diff)
		}
	}
}

// TestASplitRenderIsKustomizesOwnBuild: a top kustomization listing folders is rendered entry by
// entry; the objects, in their order, and their files are those of kustomize's build of the
// whole, a folder carrying buildMetadata (which kustomize takes from the top alone) and
// sortOptions of its own — whether the top carries nothing for its entries (each folder built on
// its own) or a namespace (each through a kustomization of its own).
func TestASplitRenderIsKustomizesOwnBuild(t *testing.T) {
	for name, top := range map[string]string{
		"resources only":   "resources: [a, b, c.yaml]\n",
		"with a namespace": "namespace: top\nresources: [a, b, c.yaml]\n",
	} {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{
				"kustomization.yaml":   top,
				"a/kustomization.yaml": "namespace: na\nbuildMetadata: [managedByLabel, originAnnotations]\nsortOptions: {order: fifo}\nlabels: [{pairs: {team: a}}]\nresources: [x.yaml]\n",
				"a/x.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: v}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: crx}\n",
				"b/Kustomization":      "namePrefix: p-\nresources: [y.yaml]\n",
				"b/y.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n",
				"c.yaml":               "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: z}\n",
			}
			root := fixture.WriteTree(t, files)
			res, err := Render(root, "", Options{})
			if err != nil || len(res.Objects) != 4 {
				t.Fatalf("render: %v, %d objects", err, len(res.Objects))
			}
			want := kustomizeBuild(t, root)
			var got []map[string]any
			files2 := map[string]string{}
			for _, o := range res.Objects {
				got = append(got, o.Object)
				files2[o.GetName()] = o.File
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("objects (-kustomize's build +rendered):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"x": "a/x.yaml", "crx": "a/x.yaml", "p-y": "b/y.yaml", "z": "c.yaml"}, files2); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

// kustomizeBuild is kustomize's own build of root from disk, each object through its JSON as
// Kubernetes reads it, in kustomize's order.
func kustomizeBuild(t *testing.T, root string) []map[string]any {
	t.Helper()
	rm, err := krusty.MakeKustomizer(&krusty.Options{PluginConfig: types.DisabledPluginConfig()}).Run(filesys.MakeFsOnDisk(), root)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	for _, r := range rm.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, u.Object)
	}
	return objs
}
