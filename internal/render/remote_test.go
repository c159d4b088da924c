package render

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRenderFetchesNoURLForAnyKustomizeField: kustomize would fetch a URL given for a patch, a
// generator's files, a replacement, the openapi schema, CRDs, configurations and more. Each is
// refused with its file and field, the render is partial, and the server a URL names sees no
// request at all — for a metadata endpoint, that is the difference between a render and an SSRF.
func TestRenderFetchesNoURLForAnyKustomizeField(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\ndata:\n  token: secret\n"))
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/latest/meta-data/iam"
	tests := []struct{ field, kustomization string }{
		{"resources[1]", "resources:\n- md.yaml\n- " + u + "\n"},
		{"components[0]", "resources:\n- md.yaml\ncomponents:\n- " + u + "\n"},
		{"patches[0].path", "resources:\n- md.yaml\npatches:\n- path: " + u + "\n"},
		{"patchesStrategicMerge[0]", "resources:\n- md.yaml\npatchesStrategicMerge:\n- " + u + "\n"},
		{"patchesJson6902[0].path", "resources:\n- md.yaml\npatchesJson6902:\n- path: " + u + "\n  target: {kind: MachineDeployment, name: good}\n"},
		{"configMapGenerator[0].files[0]", "resources:\n- md.yaml\nconfigMapGenerator:\n- name: creds\n  files:\n  - creds=" + u + "\n"},
		{"configMapGenerator[0].envs[0]", "resources:\n- md.yaml\nconfigMapGenerator:\n- name: creds\n  envs:\n  - " + u + "\n"},
		{"configMapGenerator[0].env", "resources:\n- md.yaml\nconfigMapGenerator:\n- name: creds\n  env: " + u + "\n"},
		{"secretGenerator[0].files[0]", "resources:\n- md.yaml\nsecretGenerator:\n- name: creds\n  files:\n  - " + u + "\n"},
		{"replacements[0].path", "resources:\n- md.yaml\nreplacements:\n- path: " + u + "\n"},
		{"openapi.path", "resources:\n- md.yaml\nopenapi:\n  path: " + u + "\n"},
		{"crds[0]", "resources:\n- md.yaml\ncrds:\n- " + u + "\n"},
		{"configurations[0]", "resources:\n- md.yaml\nconfigurations:\n- " + u + "\n"},
		{"generators[0]", "resources:\n- md.yaml\ngenerators:\n- " + u + "\n"},
		{"transformers[0]", "resources:\n- md.yaml\ntransformers:\n- " + u + "\n"},
		{"validators[0]", "resources:\n- md.yaml\nvalidators:\n- " + u + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			before := requests.Load()
			root := writeTree(t, map[string]string{"fleet/kustomization.yaml": tt.kustomization, "fleet/md.yaml": md("good", 1)})
			res, err := Render(root, "fleet", Options{})
			if n := requests.Load() - before; n != 0 {
				t.Fatalf("the render sent %d requests to %s", n, srv.URL)
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if !res.Partial {
				t.Error("a render with a refused location is not partial")
			}
			var msgs []string
			for _, e := range res.Errors {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			if !strings.Contains(all, "fleet/kustomization.yaml: "+tt.field+": remote location") {
				t.Errorf("errors do not name the file and %s:\n%s", tt.field, all)
			}
			if strings.Contains(all, "hunter2") {
				t.Errorf("an error shows the URL's password:\n%s", all)
			}
			if got := names(res.Objects); len(got) != 1 || !strings.Contains(got[0], "MachineDeployment//good") {
				t.Errorf("objects %v, want the local MachineDeployment only", got)
			}
		})
	}
}

// TestRenderKeepsInlineContentThatMentionsURLs: an inline patch or a literal that contains a URL
// is data, not a location.
func TestRenderKeepsInlineContentThatMentionsURLs(t *testing.T) {
	root := writeTree(t, map[string]string{
		"fleet/kustomization.yaml": `resources:
- md.yaml
configMapGenerator:
- name: links
  literals:
  - docs=https://docs.example.com
patches:
- patch: |
    apiVersion: cluster.x-k8s.io/v1beta2
    kind: MachineDeployment
    metadata:
      name: good
      annotations:
        runbook: https://runbooks.example.com/md
`,
		"fleet/md.yaml": md("good", 1),
	})
	res, err := Render(root, "fleet", Options{})
	if err != nil || res.Partial || len(res.Errors) > 0 {
		t.Fatalf("Render: %v, partial %v, errors %v", err, res.Partial, res.Errors)
	}
	if len(res.Objects) != 2 {
		t.Errorf("objects %v, want the MachineDeployment and the ConfigMap", names(res.Objects))
	}
}

// FuzzRenderFetchesNothing renders arbitrary kustomizations that may name a listening server
// anywhere: the server must never see a request.
func FuzzRenderFetchesNothing(f *testing.F) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n"))
	}))
	defer srv.Close()
	f.Add("resources:\n- md.yaml\n- URL\n")
	f.Add("resources:\n- md.yaml\npatches:\n- path: URL\n")
	f.Add("resources:\n- md.yaml\nconfigMapGenerator:\n- name: x\n  files:\n  - a=URL\n  envs: [URL]\n")
	f.Add("resources:\n- md.yaml\nopenapi: {path: URL}\ncrds: [URL]\nreplacements: [{path: URL}]\n")
	f.Fuzz(func(t *testing.T, kustomization string) {
		root := writeTree(t, map[string]string{
			"kustomization.yaml": strings.ReplaceAll(kustomization, "URL", srv.URL+"/x"),
			"md.yaml":            md("good", 1),
		})
		_, _ = Render(root, "", Options{})
		if n := requests.Load(); n != 0 {
			t.Fatalf("the render of %q sent %d requests", kustomization, n)
		}
	})
}

// TestRenderReadsKustomizationsAsKustomizeDoes: kustomize reads a kustomization's field names in
// any letter case and runs builtin plugin configurations from files and inline; each way of naming
// a remote location is refused with its file and field, and the listener sees no request.
func TestRenderReadsKustomizationsAsKustomizeDoes(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte("token=secret\n"))
	}))
	defer srv.Close()
	u := srv.URL + "/latest/meta-data/iam/security-credentials/node"
	tests := []struct {
		name  string
		files map[string]string
		field string
	}{
		{"key case", map[string]string{
			"fleet/kustomization.yaml": "Resources:\n- md.yaml\nConfigMapGenerator:\n- Name: creds\n  Files:\n  - creds=" + u + "\n",
		}, "fleet/kustomization.yaml: configMapGenerator[0].files[0]"},
		{"upper-case resources", map[string]string{
			"fleet/kustomization.yaml": "RESOURCES:\n- md.yaml\n- " + u + "\n",
		}, "fleet/kustomization.yaml: resources[1]"},
		{"builtin ConfigMapGenerator in a generators file", map[string]string{
			"fleet/kustomization.yaml": "resources:\n- md.yaml\ngenerators:\n- gen.yaml\n",
			"fleet/gen.yaml":           "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: creds\nfiles:\n- creds=" + u + "\n",
		}, "fleet/kustomization.yaml: generators[0]: fleet/gen.yaml: document 1 (ConfigMapGenerator): files[0]"},
		{"builtin SecretGenerator inline", map[string]string{
			"fleet/kustomization.yaml": "resources:\n- md.yaml\ngenerators:\n- |\n  apiVersion: builtin\n  kind: SecretGenerator\n  metadata:\n    name: creds\n  envs:\n  - " + u + "\n",
		}, "fleet/kustomization.yaml: generators[0]: document 1 (SecretGenerator): envs[0]"},
		{"builtin inline on one line", map[string]string{
			"fleet/kustomization.yaml": "resources:\n- md.yaml\ngenerators:\n- '{apiVersion: builtin, kind: ConfigMapGenerator, metadata: {name: creds}, FILES: [\"" + u + "\"]}'\n",
		}, "fleet/kustomization.yaml: generators[0]: document 1 (ConfigMapGenerator): FILES[0]"},
		{"builtin PatchTransformer in a transformers file", map[string]string{
			"fleet/kustomization.yaml": "resources:\n- md.yaml\ntransformers:\n- patch.yaml\n",
			"fleet/patch.yaml":         "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\nPath: " + u + "\n",
		}, "fleet/kustomization.yaml: transformers[0]: fleet/patch.yaml: document 1 (PatchTransformer): Path"},
		{"builtin ReplacementTransformer inline", map[string]string{
			"fleet/kustomization.yaml": "resources:\n- md.yaml\ntransformers:\n- |\n  apiVersion: builtin\n  kind: ReplacementTransformer\n  metadata:\n    name: r\n  replacements:\n  - path: " + u + "\n",
		}, "fleet/kustomization.yaml: transformers[0]: document 1 (ReplacementTransformer): replacements[0].path"},
		{"generator folder of builtin configurations", map[string]string{
			"fleet/kustomization.yaml":     "resources:\n- md.yaml\ngenerators:\n- gen\n",
			"fleet/gen/kustomization.yaml": "resources:\n- cm.yaml\n",
			"fleet/gen/cm.yaml":            "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: creds\nenv: " + u + "\n",
		}, "fleet/gen/cm.yaml: document 1 (ConfigMapGenerator): env"},
		{"helm values file", map[string]string{
			"fleet/kustomization.yaml": "resources:\n- md.yaml\nhelmCharts:\n- name: x\n  additionalValuesFiles:\n  - " + u + "\n",
		}, "fleet/kustomization.yaml: helmCharts[0].additionalValuesFiles[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := requests.Load()
			tt.files["fleet/md.yaml"] = md("good", 1)
			res, err := Render(writeTree(t, tt.files), "fleet", Options{})
			if n := requests.Load() - before; n != 0 {
				t.Fatalf("the render sent %d requests to %s", n, srv.URL)
			}
			var all string
			if err != nil {
				all = err.Error()
			} else {
				all = errors.Join(res.Errors...).Error()
				if !res.Partial {
					t.Error("a render with a refused location is not partial")
				}
				for _, o := range res.Objects {
					if o.GetKind() != "MachineDeployment" {
						t.Errorf("rendered %s %s beside the refused location", o.GetKind(), o.GetName())
					}
				}
			}
			if !strings.Contains(all, tt.field) || !strings.Contains(all, "remote location") {
				t.Errorf("errors do not name %q:\n%s", tt.field, all)
			}
		})
	}
}
