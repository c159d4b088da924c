package render

import (
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
			res, err := Render(root, "fleet")
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
	res, err := Render(root, "fleet")
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
		_, _ = Render(root, "")
		if n := requests.Load(); n != 0 {
			t.Fatalf("the render of %q sent %d requests", kustomization, n)
		}
	})
}
