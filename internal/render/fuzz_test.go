package render

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRender feeds arbitrary bytes to the render as a resource file beside a good one: it must
// never panic, and whatever it makes of the bad file, the good object is still rendered.
func FuzzRender(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"))
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: List\nitems: 3\n"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		files := map[string][]byte{
			"kustomization.yaml": []byte("resources: [good.yaml, input.yaml]\n"),
			"good.yaml":          []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\n"),
			"input.yaml":         data,
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(root, name), content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		res, err := Render(root, "", Options{})
		if err != nil {
			return // a broken root kustomization is all-or-nothing by design
		}
		for _, o := range res.Objects {
			if o.GetName() == "good" && o.GetKind() == "ConfigMap" {
				return
			}
		}
		t.Errorf("the good object was lost beside input %q: %v", data, res.Errors)
	})
}
