package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// ErrEmptyRender is returned when a build yields no object: driftd refuses to act on it, since an
// empty fleet would make every live object look orphaned.
var ErrEmptyRender = errors.New("the render produced no objects")

// originAnnotation is set by kustomize's originAnnotations build metadata; render reads the file
// of each object from it and removes it.
const originAnnotation = "config.kubernetes.io/origin"

var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Object is one desired object and the repository file it came from.
type Object struct {
	*unstructured.Unstructured
	// File is the object's source file, relative to the repository root.
	File string
}

// Result is the outcome of a render.
type Result struct {
	// Objects are the desired objects, in kustomize's order.
	Objects []Object
	// Errors name each part of the fleet that could not be rendered (a file, a folder) and why.
	Errors []error
	// Partial is true when parts were dropped: their objects are unknown, so nothing may be judged
	// orphaned.
	Partial bool
}

// Options configure a render.
type Options struct {
	// Limits bound what the render may read and produce.
	Limits Limits
	// Progress, when set, is told each file the render reads (for a render stopped at its deadline
	// to say where it was).
	Progress func(file string)
	// Emit, when set, receives the objects in order as soon as their part of the fleet is rendered,
	// and Result.Objects stays empty: a large fleet is never held whole (the sandbox's child writes
	// each object to the daemon as it comes). A render that fails after some were emitted (a
	// budget exceeded) still returns its error: what was emitted is to be dropped.
	Emit func(Object)
}

// Render builds dir (a folder of the checkout at root, "" or "." for the root) with kustomize.
// A folder without a kustomization file is built as if it had one listing its YAML files and
// sub-folders. The returned error means nothing could be rendered; a partial render returns a
// Result with Errors and Partial set. A budget of opts.Limits exceeded fails the whole render.
func Render(root, dir string, opts Options) (*Result, error) {
	t, err := newTree(root, opts.Limits)
	if err != nil {
		return nil, fmt.Errorf("reading the checkout: %w", err)
	}
	t.check, t.progress = checkFile, opts.Progress
	r := &renderer{fs: t, tree: t, emit: opts.Emit}
	res, err := r.render(dir)
	_ = t.countObjects(r.count)
	if over := t.budget(); over != nil {
		return nil, over
	}
	return res, err
}

func (r *renderer) render(dir string) (*Result, error) {
	target := path.Clean("/" + strings.TrimPrefix(path.Clean("/"+dir), "/"))
	if !r.fs.IsDir(target) {
		return nil, fmt.Errorf("path %q is not a folder of the repository", dir)
	}
	if _, err := r.ensureKustomization(target, true); err != nil {
		return nil, err
	}
	if err := r.addOriginAnnotations(target); err != nil {
		return nil, err
	}
	res := &Result{}
	if entries, fields, ok := r.splitEntries(target); ok {
		errs, err := r.buildSplit(target, entries, fields)
		if err != nil {
			return nil, err
		}
		res.Errors = append(r.refusals(), errs...)
		res.Partial = len(res.Errors) > 0
		if r.count == 0 {
			if len(res.Errors) > 0 {
				return nil, errors.Join(res.Errors...)
			}
			return res, ErrEmptyRender
		}
		res.Objects = r.objs
		return res, nil
	}
	objs, err := r.build(target)
	if err != nil {
		dropped, isoErr := r.isolate(target)
		if isoErr != nil || len(dropped) == 0 {
			return nil, errors.Join(append(r.refusals(), fmt.Errorf("rendering %s: %w", display(target), err))...)
		}
		res.Errors = append(res.Errors, dropped...)
		if objs, err = r.build(target); err != nil {
			return nil, errors.Join(append(append(r.refusals(), res.Errors...), fmt.Errorf("rendering %s: %w", display(target), err))...)
		}
	}
	res.Errors = append(r.refusals(), res.Errors...)
	res.Partial = len(res.Errors) > 0
	r.out(objs)
	if r.count == 0 {
		return res, ErrEmptyRender
	}
	res.Objects = r.objs
	return res, nil
}

type renderer struct {
	fs   filesys.FileSystem
	tree *tree
	// emit (Options.Emit) takes the objects as they come; without it they are kept in objs.
	emit  func(Object)
	objs  []Object
	count int
}

// out hands on rendered objects, in order: to emit, or to the result.
func (r *renderer) out(objs []Object) {
	r.count += len(objs)
	if r.emit == nil {
		r.objs = append(r.objs, objs...)
		return
	}
	for _, o := range objs {
		r.emit(o)
	}
}

// refusals are the locations outside the checkout refused so far, each naming its file and field.
func (r *renderer) refusals() []error {
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	return slices.Clone(r.tree.refusals)
}

func (r *renderer) build(dir string) ([]Object, error) {
	return r.buildWith(dir, types.LoadRestrictionsRootOnly)
}

func (r *renderer) buildWith(dir string, restrictions types.LoadRestrictions) ([]Object, error) {
	k := krusty.MakeKustomizer(&krusty.Options{
		LoadRestrictions: restrictions,
		PluginConfig:     types.DisabledPluginConfig(),
	})
	rm, err := k.Run(r.fs, dir)
	if err != nil {
		return nil, err
	}
	objs := make([]Object, 0, rm.Size())
	for _, res := range rm.Resources() {
		// The YAML node decoded in place (res.MarshalJSON writes it out as YAML and parses that
		// again: a third of the render's time), then through JSON for Kubernetes' number types.
		m, err := res.Map()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		js, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		objs = append(objs, Object{Unstructured: u, File: takeOrigin(u, dir)})
	}
	return objs, nil
}

// takeOrigin returns the file an object came from and removes the annotation that said so.
func takeOrigin(u *unstructured.Unstructured, dir string) string {
	ann := u.GetAnnotations()
	raw, ok := ann[originAnnotation]
	if !ok {
		return ""
	}
	delete(ann, originAnnotation)
	if len(ann) == 0 {
		ann = nil
	}
	u.SetAnnotations(ann)
	var origin struct {
		Path string `json:"path"`
	}
	if err := yaml.Unmarshal([]byte(raw), &origin); err != nil || origin.Path == "" {
		return ""
	}
	return strings.TrimPrefix(path.Join(dir, origin.Path), "/")
}

// kustomizationFile returns the kustomization file of dir, or "".
func (r *renderer) kustomizationFile(dir string) string {
	for _, n := range kustomizationNames {
		if p := path.Join(dir, n); r.fs.Exists(p) {
			return p
		}
	}
	return ""
}

// ensureKustomization writes a kustomization for a folder that has none, listing its YAML files
// and its sub-folders, as Flux's kustomize-controller does. It reports whether the folder holds
// nothing to render (and then writes nothing, except for the top folder).
func (r *renderer) ensureKustomization(dir string, top bool) (empty bool, err error) {
	if r.kustomizationFile(dir) != "" {
		return false, nil
	}
	entries, err := r.fs.ReadDir(dir)
	if err != nil {
		return false, err
	}
	sort.Strings(entries)
	var resources []any
	for _, e := range entries {
		p := path.Join(dir, e)
		switch {
		case r.fs.IsDir(p):
			subEmpty, err := r.ensureKustomization(p, false)
			if err != nil {
				return false, err
			}
			if !subEmpty {
				resources = append(resources, e)
			}
		case strings.HasSuffix(e, ".yaml") || strings.HasSuffix(e, ".yml") || strings.HasSuffix(e, ".json"):
			resources = append(resources, e)
		}
	}
	if len(resources) == 0 && !top {
		return true, nil
	}
	return len(resources) == 0, r.writeKustomization(path.Join(dir, "kustomization.yaml"), map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  resources,
	})
}

// addOriginAnnotations asks kustomize to record each object's source file.
func (r *renderer) addOriginAnnotations(dir string) error {
	file := r.kustomizationFile(dir)
	k, err := r.readKustomization(file)
	if err != nil {
		return fmt.Errorf("%s: %w", display(file), err)
	}
	meta, _ := k["buildMetadata"].([]any)
	for _, m := range meta {
		if m == "originAnnotations" {
			return nil
		}
	}
	k["buildMetadata"] = append(meta, "originAnnotations")
	return r.writeKustomization(file, k)
}

func (r *renderer) readKustomization(file string) (map[string]any, error) {
	data, err := r.fs.ReadFile(file)
	if err != nil {
		return nil, err
	}
	k := map[string]any{}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("not a valid kustomization: %w", err)
	}
	return k, nil
}

func (r *renderer) writeKustomization(file string, k map[string]any) error {
	data, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	return r.fs.WriteFile(file, data)
}

func display(p string) string {
	if p == "/" {
		return "the repository root"
	}
	return strings.TrimPrefix(p, "/")
}
