package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// The render must read nothing but the checkout. What makes that hold is the sandbox the render
// runs in (no network, no programs: internal/sandbox) and the tree kustomize reads through (the
// checkout only, never its .git). This guard is there for the message: it finds every location
// outside the checkout a kustomization or a builtin plugin configuration names, reads them as
// kustomize does (field names in any letter case, plugin configurations in files and inline), and
// refuses each with its file and field, so the render says what was refused instead of failing on
// a request the sandbox stopped.

// checkFile is the tree's check of every file read from the checkout: YAML aliases within budget,
// kustomizations without remote locations, builtin plugin configurations without remote locations.
func checkFile(t *tree, p string, data []byte) ([]byte, error) {
	if err := checkAliases(data, t.limits.MaxAliasNodes); err != nil {
		return nil, err
	}
	if isKustomizationName(path.Base(p)) {
		return t.guardKustomization(p, data)
	}
	if field, value, ok := remoteInPluginConfigs(data); ok {
		return nil, refusedError(field, value)
	}
	return data, nil
}

func refusedError(field, value string) error {
	return fmt.Errorf("%s: remote location %q refused: driftd renders only what the repository holds", field, redactURL(value))
}

// guardKustomization returns kustomization p as kustomize reads it (kustomize's own type, field
// names in any case), without each entry that names a location outside the checkout, and records
// each refused entry with its file and field. A generator with a refused source is dropped whole:
// a ConfigMap or Secret without part of its data must not be applied. Inline content (an inline
// patch, a literal) is data, not a location, and is left alone.
func (t *tree) guardKustomization(p string, data []byte) ([]byte, error) {
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return data, nil // kustomize reports a broken kustomization itself
	}
	// kustomize parses some of its strings as YAML in turn (inline patches, inline plugin
	// configurations): their aliases count too.
	if err := aliasesInStrings(k, t.limits.MaxAliasNodes); err != nil {
		return nil, err
	}
	var refused []error
	refuse := func(field, value string) {
		refused = append(refused, fmt.Errorf("%s: %w", display(p), refusedError(field, value)))
	}
	dir := path.Dir(p)
	local := func(name string) bool {
		q := clean(path.Join(dir, name))
		t.listLocked(path.Dir(q))
		return t.mem.Exists(q)
	}
	keep := func(field string, list []string, ok func(string) bool) []string {
		out := list[:0:0]
		for i, s := range list {
			if !ok(s) {
				refuse(fmt.Sprintf("%s[%d]", field, i), s)
				continue
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	notRemote := func(s string) bool { return !isRemote(s) || local(s) }
	notURL := func(s string) bool { return !isURL(s) }
	k.Resources = keep("resources", k.Resources, notRemote)
	k.Bases = keep("bases", k.Bases, notRemote)
	k.Components = keep("components", k.Components, notRemote)
	// A folder that includes itself, directly or through others, would have kustomize recurse
	// without end (it does not look for cycles): that entry is refused.
	acyclic := func(field string, list []string) []string {
		out := list[:0:0]
		for i, e := range list {
			q := clean(path.Join(dir, e))
			t.listLocked(path.Dir(q))
			if t.mem.IsDir(q) && t.includes(q, dir) {
				refused = append(refused, fmt.Errorf("%s: %s[%d]: %q includes this folder again (a cycle); refused", display(p), field, i, e))
				continue
			}
			if t.mem.IsDir(q) {
				t.edges[dir] = append(t.edges[dir], q)
			}
			out = append(out, e)
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	k.Resources = acyclic("resources", k.Resources)
	k.Bases = acyclic("bases", k.Bases)
	k.Components = acyclic("components", k.Components)
	k.Crds = keep("crds", k.Crds, notURL)
	k.Configurations = keep("configurations", k.Configurations, notURL)
	var psm []types.PatchStrategicMerge
	for i, e := range k.PatchesStrategicMerge {
		if isURL(string(e)) {
			refuse(fmt.Sprintf("patchesStrategicMerge[%d]", i), string(e))
			continue
		}
		psm = append(psm, e)
	}
	k.PatchesStrategicMerge = psm
	patches := func(field string, list []types.Patch) []types.Patch {
		var out []types.Patch
		for i, e := range list {
			if isURL(e.Path) {
				refuse(fmt.Sprintf("%s[%d].path", field, i), e.Path)
				continue
			}
			out = append(out, e)
		}
		return out
	}
	k.Patches = patches("patches", k.Patches)
	k.PatchesJson6902 = patches("patchesJson6902", k.PatchesJson6902)
	var repl []types.ReplacementField
	for i, e := range k.Replacements {
		if isURL(e.Path) {
			refuse(fmt.Sprintf("replacements[%d].path", i), e.Path)
			continue
		}
		repl = append(repl, e)
	}
	k.Replacements = repl
	sources := func(field string, i int, kv types.KvPairSources) bool {
		ok := true
		for j, s := range kv.FileSources {
			if _, file, found := strings.Cut(s, "="); found {
				s = file
			}
			if isURL(s) {
				refuse(fmt.Sprintf("%s[%d].files[%d]", field, i, j), s)
				ok = false
			}
		}
		for j, s := range kv.EnvSources {
			if isURL(s) {
				refuse(fmt.Sprintf("%s[%d].envs[%d]", field, i, j), s)
				ok = false
			}
		}
		if isURL(kv.EnvSource) {
			refuse(fmt.Sprintf("%s[%d].env", field, i), kv.EnvSource)
			ok = false
		}
		return ok
	}
	var cms []types.ConfigMapArgs
	for i, g := range k.ConfigMapGenerator {
		if sources("configMapGenerator", i, g.KvPairSources) {
			cms = append(cms, g)
		}
	}
	k.ConfigMapGenerator = cms
	var secrets []types.SecretArgs
	for i, g := range k.SecretGenerator {
		if sources("secretGenerator", i, g.KvPairSources) {
			secrets = append(secrets, g)
		}
	}
	k.SecretGenerator = secrets
	if s := k.OpenAPI["path"]; isURL(s) {
		refuse("openapi.path", s)
		k.OpenAPI = nil
	}
	// Plugin configurations: a path, or the configuration itself inline (any YAML kustomize parses
	// as objects, flow style on one line included).
	plugins := func(field string, list []string) []string {
		var out []string
		for i, e := range list {
			at := fmt.Sprintf("%s[%d]", field, i)
			if inlineObjects(e) {
				if f, v, ok := remoteInPluginConfigs([]byte(e)); ok {
					refuse(at+": "+f, v)
					continue
				}
			} else if isURL(e) {
				refuse(at, e)
				continue
			} else if q := clean(path.Join(dir, e)); local(e) && !t.mem.IsDir(q) {
				if _, err := t.readLocked(q); err != nil {
					refused = append(refused, fmt.Errorf("%s: %s: %w", display(p), at, err))
					continue
				}
			}
			out = append(out, e)
		}
		return out
	}
	k.Generators = plugins("generators", k.Generators)
	k.Transformers = plugins("transformers", k.Transformers)
	k.Validators = plugins("validators", k.Validators)
	// Whatever else names a location (a Helm chart's values file or repository, a field a newer
	// kustomize adds) is refused with its whole field.
	for {
		field, value, ok := remoteIn(k, kustomizationData)
		if !ok {
			break
		}
		refuse(field, value)
		if !dropField(&k, field) {
			t.refusals = append(t.refusals, refused...)
			return nil, nil // cannot be taken out: nothing of this kustomization is built
		}
	}
	t.refusals = append(t.refusals, refused...)
	out, err := yaml.Marshal(k)
	if err != nil {
		return data, nil
	}
	return out, nil
}

// aliasesInStrings checks the YAML aliases of every string of v that kustomize may parse as YAML.
func aliasesInStrings(v any, limit int) error {
	js, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return nil
	}
	var walk func(v any, at string) error
	walk = func(v any, at string) error {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if err := walk(e, strings.TrimPrefix(at+"."+k, ".")); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range x {
				if err := walk(e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		case string:
			if strings.Contains(x, "*") {
				if err := checkAliases([]byte(x), limit); err != nil {
					return fmt.Errorf("%s: %w", at, err)
				}
			}
		}
		return nil
	}
	return walk(tree, "")
}

// kustomizationData are the kustomization fields that hold data, never a location (or that the
// guard checked on its own).
var kustomizationData = []string{"literals", "patch", "commonLabels", "commonAnnotations", "labels", "pairs",
	"metadata", "annotations", "generators", "transformers", "validators", "vars", "replicas", "images", "imageTags",
	"buildMetadata", "sortOptions", "namePrefix", "nameSuffix", "namespace", "name", "behavior", "target", "options"}

// pluginData are the fields of builtin plugin configurations that hold data, never a location.
var pluginData = []string{"literals", "patch", "patches", "jsonOp", "annotations", "labels", "metadata",
	"fieldSpecs", "target", "selector", "options", "valuesInline"}

// includes reports whether folder from reaches folder to through the kustomizations read so far
// (from == to included).
func (t *tree) includes(from, to string) bool {
	seen := map[string]bool{}
	stack := []string{from}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if d == to {
			return true
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		stack = append(stack, t.edges[d]...)
	}
	return false
}

// remoteIn walks v (as JSON) and returns the first string that names a remote location, outside the
// fields data lists (compared in any letter case, as kustomize decodes them).
func remoteIn(v any, data []string) (field, value string, ok bool) {
	js, err := json.Marshal(v)
	if err != nil {
		return "", "", false
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return "", "", false
	}
	return findRemote(tree, "", data)
}

func findRemote(v any, at string, data []string) (string, string, bool) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if slices.ContainsFunc(data, func(d string) bool { return strings.EqualFold(d, k) }) {
				continue
			}
			field := k
			if at != "" {
				field = at + "." + k
			}
			if f, s, ok := findRemote(x[k], field, data); ok {
				return f, s, true
			}
		}
	case []any:
		for i, e := range x {
			if f, s, ok := findRemote(e, fmt.Sprintf("%s[%d]", at, i), data); ok {
				return f, s, true
			}
		}
	case string:
		if isURL(x) {
			return at, x, true
		}
		if _, file, found := strings.Cut(x, "="); found && isURL(file) {
			return at, file, true // a generator's key=file
		}
	}
	return "", "", false
}

// dropField removes the top-level field of k that field starts with, reporting whether it could.
func dropField(k *types.Kustomization, field string) bool {
	top, _, _ := strings.Cut(field, "[")
	top, _, _ = strings.Cut(top, ".")
	js, err := json.Marshal(k)
	if err != nil {
		return false
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return false
	}
	if _, ok := m[top]; !ok {
		return false
	}
	delete(m, top)
	js, _ = json.Marshal(m)
	var out types.Kustomization
	if err := json.Unmarshal(js, &out); err != nil {
		return false
	}
	*k = out
	return true
}

// remoteInPluginConfigs looks through the YAML documents of data for a builtin plugin configuration
// (apiVersion builtin, as kustomize recognises one) that names a remote location.
func remoteInPluginConfigs(data []byte) (field, value string, ok bool) {
	if !bytes.Contains(bytes.ToLower(data), []byte("builtin")) {
		return "", "", false
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return "", "", false
			}
			return "", "", false // not YAML objects: kustomize reports it
		}
		if m == nil || !isBuiltin(m) {
			continue
		}
		if f, v, ok := findRemote(m, "", pluginData); ok {
			kind, _ := m["kind"].(string)
			return fmt.Sprintf("document %d (%s): %s", doc, kind, f), v, true
		}
	}
}

// isBuiltin says whether a document is a builtin plugin configuration.
func isBuiltin(m map[string]any) bool {
	for k, v := range m {
		if strings.EqualFold(k, "apiVersion") {
			s, _ := v.(string)
			return strings.EqualFold(strings.TrimSpace(s), "builtin")
		}
	}
	return false
}

// inlineObjects says whether a generators/transformers/validators entry is a configuration inline
// rather than a path: kustomize takes it as inline when it parses as objects.
func inlineObjects(s string) bool {
	if !strings.ContainsAny(s, ":\n{") {
		return false
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		// Several documents: inline when the first one is an object.
		first, _, _ := strings.Cut(s, "\n---")
		if err := yaml.Unmarshal([]byte(first), &m); err != nil {
			return false
		}
	}
	return len(m) > 0
}

// isURL tells a location with a scheme (https://…, git::…, s3://…) from a path in the repository.
// kustomize fetches http(s) itself and hands others to git; all leave the checkout.
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
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("REDACTED")
	return u.String()
}
