package render

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
)

// refuseRemote removes, from every kustomization of the tree, each entry that would make kustomize
// reach outside the checkout — a remote base or component (a URL, a git repository), and a URL given
// for a patch, a generator's files or env files, a replacement, the openapi schema, CRDs,
// configurations, generators, transformers or validators — and reports each with its file and
// field. A render reads nothing but the checkout: no request leaves the process (kustomize would
// fetch such URLs with no timeout, so a slow server would also hang the render). Inline content
// (an inline patch, a literal) is data, not a location, and is left alone.
func (r *renderer) refuseRemote() ([]error, error) {
	var refused []error
	err := r.fs.Walk("/", func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !isKustomizationName(path.Base(p)) {
			return err
		}
		k, err := r.readKustomization(p)
		if err != nil {
			return nil // kustomize reports a broken kustomization itself
		}
		refuse := func(field string, value string) {
			refused = append(refused, fmt.Errorf("%s: %s: remote location %q refused: driftd renders only what the repository holds", display(p), field, redactURL(value)))
		}
		local := func(name string) bool { return r.fs.Exists(path.Join(path.Dir(p), name)) }
		changed := false

		// Lists of kustomizations or files.
		for _, field := range []string{"resources", "bases", "components"} {
			changed = filterItems(k, field, func(i int, s string) bool {
				if isRemote(s) && !local(s) {
					refuse(fmt.Sprintf("%s[%d]", field, i), s)
					return false
				}
				return true
			}) || changed
		}
		for _, field := range []string{"crds", "configurations", "generators", "transformers", "validators", "patchesStrategicMerge"} {
			changed = filterItems(k, field, func(i int, s string) bool {
				if isURL(s) {
					refuse(fmt.Sprintf("%s[%d]", field, i), s)
					return false
				}
				return true
			}) || changed
		}
		// Lists of entries that name a file in "path".
		for _, field := range []string{"patches", "patchesJson6902", "replacements"} {
			changed = filterItems(k, field, func(i int, e map[string]any) bool {
				if s, _ := e["path"].(string); isURL(s) {
					refuse(fmt.Sprintf("%s[%d].path", field, i), s)
					return false
				}
				return true
			}) || changed
		}
		// Generators: files ([key=]path), envs and env. A generator with a refused source is
		// dropped whole: a ConfigMap or Secret without part of its data must not be applied.
		for _, gen := range []string{"configMapGenerator", "secretGenerator"} {
			changed = filterItems(k, gen, func(i int, e map[string]any) bool {
				ok := true
				for _, field := range []string{"files", "envs"} {
					list, _ := e[field].([]any)
					for j, raw := range list {
						s, _ := raw.(string)
						file := s
						if _, f, found := strings.Cut(s, "="); found && field == "files" {
							file = f
						}
						if isURL(file) {
							refuse(fmt.Sprintf("%s[%d].%s[%d]", gen, i, field, j), file)
							ok = false
						}
					}
				}
				if s, _ := e["env"].(string); isURL(s) {
					refuse(fmt.Sprintf("%s[%d].env", gen, i), s)
					ok = false
				}
				return ok
			}) || changed
		}
		if o, ok := k["openapi"].(map[string]any); ok {
			if s, _ := o["path"].(string); isURL(s) {
				refuse("openapi.path", s)
				delete(k, "openapi")
				changed = true
			}
		}
		if changed {
			return r.writeKustomization(p, k)
		}
		return nil
	})
	return refused, err
}

// filterItems keeps the entries of the list k[field] that keep accepts (entries of another type than
// T are kept) and reports whether it dropped any.
func filterItems[T any](k map[string]any, field string, keep func(i int, e T) bool) bool {
	entries, ok := k[field].([]any)
	if !ok {
		return false
	}
	out := entries[:0:0]
	for i, e := range entries {
		if v, ok := e.(T); ok && !keep(i, v) {
			continue
		}
		out = append(out, e)
	}
	if len(out) == len(entries) {
		return false
	}
	k[field] = out
	return true
}

// isURL tells a location with a scheme (https://…, git::…, s3://…) from a path in the repository.
// kustomize fetches http(s) itself and hands others to go-getter or git; all leave the checkout.
func isURL(s string) bool {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "\n") {
		return false // inline content
	}
	return strings.Contains(s, "://") || strings.HasPrefix(s, "git::") || strings.HasPrefix(s, "git@")
}

// isRemote tells a remote kustomize target (https://…, git@…, github.com/org/repo//path?ref=…)
// from a local path.
func isRemote(name string) bool {
	if isURL(name) || strings.Contains(name, "?ref=") || strings.Contains(name, "?version=") {
		return true
	}
	first, _, _ := strings.Cut(name, "/")
	return strings.Contains(first, ".") && first != "." && first != ".." && strings.Contains(name, "/")
}

// redactURL hides the user information (a token, a password) of a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}
