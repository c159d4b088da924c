package render

import (
	"errors"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// TestRenderRefusesAKustomizationCycle: kustomize does not look for cycles and would recurse until
// it runs out of stack; a folder that includes itself, directly or through others, is refused with
// the entry that closes the cycle named.
func TestRenderRefusesAKustomizationCycle(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"itself", map[string]string{"a/kustomization.yaml": "resources: [md.yaml, .]\n", "a/md.yaml": md("a", 1)}, `a/kustomization.yaml: resources[1]: "." includes this folder again`},
		{"an empty entry", map[string]string{"a/kustomization.yaml": "resources:\n- md.yaml\n-\n", "a/md.yaml": md("a", 1)}, `a/kustomization.yaml: resources[1]: "" includes this folder again`},
		{"through another", map[string]string{
			"a/kustomization.yaml": "resources: [md.yaml, ../b]\n", "a/md.yaml": md("a", 1),
			"b/kustomization.yaml": "resources: [md.yaml, ../a]\n", "b/md.yaml": md("b", 1),
		}, `b/kustomization.yaml: resources[1]: "../a" includes this folder again`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Render(fixture.WriteTree(t, tt.files), "a", Options{})
			var msg string
			if err != nil {
				msg = err.Error()
			} else {
				msg = errors.Join(res.Errors...).Error()
				if !res.Partial {
					t.Error("not partial")
				}
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("errors %q, want %q", msg, tt.want)
			}
		})
	}
}
