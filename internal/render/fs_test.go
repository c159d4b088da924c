package render

import (
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// TestTheTreeCleansPathsAsKustomizesFilesystemDoes: the tree answers CleanedAbs itself (the
// in-memory filesystem's answer costs time in the number of a folder's entries); its answers are
// the in-memory filesystem's, for folders, files, missing paths and paths to be cleaned.
func TestTheTreeCleansPathsAsKustomizesFilesystemDoes(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"fleet/kustomization.yaml":     "resources:\n- a\n",
		"fleet/a/kustomization.yaml":   "resources:\n- cm.yaml\n",
		"fleet/a/cm.yaml":              "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
		"fleet/b/c/kustomization.yaml": "resources: []\n",
		"top.yaml":                     "x: 1\n",
	})
	tr, err := newTree(root, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/", "/fleet", "/fleet/", "fleet/a", "/fleet/a/cm.yaml", "/fleet/a/../b/c",
		"/fleet/b/c/kustomization.yaml", "/top.yaml", "/fleet/./a/cm.yaml", "/missing", "/fleet/a/missing.yaml",
		"/fleet/a/cm.yaml/below"}
	// Every path read first, as kustomize would, so the in-memory filesystem holds what the tree lists.
	for _, p := range paths {
		tr.Exists(p)
		tr.IsDir(p)
	}
	for _, p := range paths {
		dir, file, err := tr.CleanedAbs(p)
		tr.mu.Lock()
		wantDir, wantFile, wantErr := tr.mem.CleanedAbs(clean(p))
		tr.mu.Unlock()
		if dir != wantDir || file != wantFile || (err == nil) != (wantErr == nil) {
			t.Errorf("CleanedAbs(%q) = %q, %q, %v; the in-memory filesystem says %q, %q, %v", p, dir, file, err, wantDir, wantFile, wantErr)
		}
		if err == nil && !tr.Exists(filesys.ConfirmedDir(dir).Join(file)) {
			t.Errorf("CleanedAbs(%q) = %q, %q, which does not exist", p, dir, file)
		}
	}
}
