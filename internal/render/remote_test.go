package render

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv/fixture"
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
			root := fixture.WriteTree(t, map[string]string{"fleet/kustomization.yaml": tt.kustomization, "fleet/md.yaml": md("good", 1)})
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
	root := fixture.WriteTree(t, map[string]string{
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

// urlFields are every kustomization field and builtin plugin configuration field kustomize reads a
// location from, as "field: value" YAML with URL where the location goes.
var urlFields = []string{
	"resources: [md.yaml, URL]",
	"bases: [URL]",
	"components: [URL]",
	"crds: [URL]",
	"configurations: [URL]",
	"patchesStrategicMerge: [URL]",
	"patches: [{path: URL}]",
	"patchesJson6902: [{path: URL, target: {kind: MachineDeployment, name: good}}]",
	"replacements: [{path: URL}]",
	"openapi: {path: URL}",
	"configMapGenerator: [{name: x, files: [k=URL]}]",
	"configMapGenerator: [{name: x, envs: [URL]}]",
	"configMapGenerator: [{name: x, env: URL}]",
	"secretGenerator: [{name: x, files: [URL]}]",
	"secretGenerator: [{name: x, envs: [URL]}]",
	"helmCharts: [{name: x, valuesFile: URL, additionalValuesFiles: [URL]}]",
	"generators: [URL]",
	"transformers: [URL]",
	"validators: [URL]",
}

// pluginFields are builtin plugin configurations that read a location.
var pluginFields = []string{
	"kind: ConfigMapGenerator\nmetadata: {name: x}\nfiles: [k=URL]",
	"kind: ConfigMapGenerator\nmetadata: {name: x}\nenvs: [URL]",
	"kind: SecretGenerator\nmetadata: {name: x}\nenv: URL",
	"kind: PatchTransformer\nmetadata: {name: x}\npath: URL",
	"kind: PatchStrategicMergeTransformer\nmetadata: {name: x}\npaths: [URL]",
	"kind: PatchJson6902Transformer\nmetadata: {name: x}\npath: URL\ntarget: {kind: MachineDeployment, name: good}",
	"kind: ReplacementTransformer\nmetadata: {name: x}\nreplacements: [{path: URL}]",
	"kind: HelmChartInflationGenerator\nmetadata: {name: x}\nname: x\nvaluesFile: URL",
}

// recase changes the letter case of the keys of yaml (the text before each ": ") as bits say:
// kustomize decodes a kustomization's and a plugin configuration's keys in any case.
func recase(yaml string, bits uint64) string {
	var b strings.Builder
	key := true
	n := 0
	for _, r := range yaml {
		switch {
		case r == ':' || r == ',' || r == '[' || r == ']':
			key = r != ':'
		case r == '\n' || r == '{':
			key = true
		}
		if key && r >= 'a' && r <= 'z' {
			if bits&(1<<(n%64)) != 0 {
				r -= 'a' - 'A'
			}
			n++
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FuzzRenderFetchesNothing renders kustomizations that name a listening server in every field
// kustomize takes a location from — top level or in a builtin plugin configuration, in a file, a
// folder or inline — with keys in any letter case, beside arbitrary text: the server must never see
// a request. (The render's sandbox would stop one anyway; this holds the guard to kustomize's own
// reading, so what is refused is named.)
func FuzzRenderFetchesNothing(f *testing.F) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n"))
	}))
	defer srv.Close()
	for i := range urlFields {
		f.Add(uint8(i), uint8(0), uint8(0), uint64(0), "")
		f.Add(uint8(i), uint8(0), uint8(0), uint64(0xffffffffffffffff), "")
	}
	for i := range pluginFields {
		for form := range uint8(3) {
			f.Add(uint8(0), uint8(i), form+1, uint64(0x5555), "")
		}
	}
	f.Add(uint8(0), uint8(0), uint8(0), uint64(0), "resources:\n- md.yaml\n- URL\n")
	f.Add(uint8(0), uint8(0), uint8(0), uint64(0), "resources:\n- md.yaml\nconfigMapGenerator:\n- name: x\n  files:\n  - a=URL\n  envs: [URL]\n")
	f.Fuzz(func(t *testing.T, field, plugin, form uint8, bits uint64, extra string) {
		url := srv.URL + "/latest/meta-data"
		files := map[string]string{"md.yaml": md("good", 1)}
		kust := "resources: [md.yaml]\n"
		config := "apiVersion: builtin\n" + pluginFields[int(plugin)%len(pluginFields)]
		config = recase(strings.ReplaceAll(config, "URL", url), bits)
		switch form % 4 {
		case 0: // a top-level field
			kust = recase(strings.ReplaceAll(urlFields[int(field)%len(urlFields)], "URL", url), bits) + "\n"
			if !strings.Contains(strings.ToLower(kust), "resources") {
				kust += "resources: [md.yaml]\n"
			}
		case 1: // a builtin configuration in a file
			files["plugin.yaml"] = config
			kust += []string{"generators", "transformers"}[bits%2] + ": [plugin.yaml]\n"
		case 2: // inline
			kust += []string{"generators", "transformers"}[bits%2] + ":\n- |\n  " + strings.ReplaceAll(config, "\n", "\n  ") + "\n"
		case 3: // a folder of configurations
			files["gen/kustomization.yaml"] = "resources: [plugin.yaml]\n"
			files["gen/plugin.yaml"] = config
			kust += []string{"generators", "transformers"}[bits%2] + ": [gen]\n"
		}
		if extra != "" {
			kust = strings.ReplaceAll(extra, "URL", url)
		}
		files["kustomization.yaml"] = kust
		root := fixture.WriteTree(t, files)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = Render(root, "", Options{})
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the render of\n%s\ndid not return (the sandbox stops such a render at its deadline)", kust)
		}
		if n := requests.Load(); n != 0 {
			t.Fatalf("the render of\n%s\nsent %d requests", kust, n)
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
			res, err := Render(fixture.WriteTree(t, tt.files), "fleet", Options{})
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
