package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// listFields are the kustomization fields that name other files or kustomizations.
var listFields = []string{"resources", "bases", "components"}

// isolate finds the entries of dir's kustomization that fail on their own, rewrites the
// kustomization without them and returns one error per dropped entry, naming its file. A folder
// entry that fails is isolated in turn, so only the broken part of it is dropped.
func (r *renderer) isolate(dir string) ([]error, error) {
	file := r.kustomizationFile(dir)
	k, err := r.readKustomization(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", display(file), err)
	}
	var dropped []error
	for _, field := range listFields {
		entries, _ := k[field].([]any)
		var keep []any
		for _, e := range entries {
			name, ok := e.(string)
			if !ok {
				keep = append(keep, e)
				continue
			}
			p := path.Join(dir, name)
			if p == dir || strings.HasPrefix(dir+"/", p+"/") {
				// The folder itself or one above it: kustomize would recurse without end.
				dropped = append(dropped, fmt.Errorf("%s: %s[%q] includes this folder again (a cycle); refused", display(file), field, name))
				continue
			}
			if r.fs.IsDir(p) {
				if _, err := r.build(p); err != nil {
					sub, isoErr := r.isolate(p)
					if isoErr == nil && len(sub) > 0 {
						if _, err := r.build(p); err == nil {
							dropped = append(dropped, sub...)
							keep = append(keep, e)
							continue
						}
					}
					dropped = append(dropped, fmt.Errorf("%s: %w", display(p), err))
					continue
				}
			} else if err := r.checkFile(p); err != nil {
				dropped = append(dropped, err)
				continue
			}
			keep = append(keep, e)
		}
		if entries != nil {
			k[field] = keep
		}
	}
	if len(dropped) == 0 {
		return nil, nil
	}
	return dropped, r.writeKustomization(file, k)
}

// checkFile checks that a resource file holds only well-formed objects with a kind and a name.
func (r *renderer) checkFile(p string) error {
	data, err := r.fs.ReadFile(p)
	if err != nil {
		return fmt.Errorf("%s: %w", display(p), err)
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", display(p), doc, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return fmt.Errorf("%s: document %d: malformed YAML: %w", display(p), doc, err)
		}
		if t := string(bytes.TrimSpace(js)); t == "null" || t == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return fmt.Errorf("%s: document %d: %w", display(p), doc, err)
		}
		if u.GetName() == "" {
			return fmt.Errorf("%s: document %d: %s has no metadata.name", display(p), doc, u.GetKind())
		}
	}
}

func isKustomizationName(n string) bool {
	for _, k := range kustomizationNames {
		if n == k {
			return true
		}
	}
	return false
}
