package render

import (
	"fmt"
	"path"
	"runtime"
	"sync"

	"sigs.k8s.io/kustomize/api/types"
)

// perObjectFields are the kustomization fields that act on each object alone. A top kustomization
// made only of these and resources renders the same entry by entry as all at once, so render
// builds its entries separately: kustomize checks each new object against every one before it,
// which makes one build of a large fleet quadratic (40 s for 8,000 objects), while a cluster's
// folder holds a handful.
var perObjectFields = map[string]bool{
	"apiVersion": true, "kind": true, "resources": true, "buildMetadata": true,
	"namespace": true, "labels": true, "commonLabels": true, "commonAnnotations": true,
}

// splitEntries returns the resources entries of dir's kustomization when it can be rendered entry
// by entry, with the kustomization's other fields.
func (r *renderer) splitEntries(dir string) ([]string, map[string]any, bool) {
	k, err := r.readKustomization(r.kustomizationFile(dir))
	if err != nil {
		return nil, nil, false
	}
	for field := range k {
		if !perObjectFields[field] {
			return nil, nil, false
		}
	}
	raw, _ := k["resources"].([]any)
	if len(raw) < 2 {
		return nil, nil, false
	}
	entries := make([]string, 0, len(raw))
	for _, e := range raw {
		s, ok := e.(string)
		if !ok {
			return nil, nil, false
		}
		entries = append(entries, s)
	}
	delete(k, "resources")
	return entries, k, true
}

// part is one entry of a split render.
type part struct {
	entry string
	dir   string // the synthetic kustomization's folder
	file  bool
	objs  []Object
	err   error
	done  chan struct{} // closed once built
}

// buildSplit renders each entry of dir's kustomization on its own, in parallel, through a
// synthetic kustomization beside it that carries the same per-object fields. It hands on the
// objects in the entries' order (out) as each entry is done, and returns one error per entry that
// failed, naming it.
func (r *renderer) buildSplit(dir string, entries []string, fields map[string]any) ([]error, error) {
	parts := make([]*part, len(entries))
	for i, e := range entries {
		p := &part{entry: e, dir: path.Join(dir, fmt.Sprintf(".driftd-part-%d", i)), file: !r.fs.IsDir(path.Join(dir, e)), done: make(chan struct{})}
		if !p.file && r.buildsAlone(path.Join(dir, e), fields) {
			p.dir = path.Join(dir, e)
			parts[i] = p
			continue
		}
		k := map[string]any{"resources": []any{path.Join("..", e)}}
		for f, v := range fields {
			k[f] = v
		}
		if err := r.fs.MkdirAll(p.dir); err != nil {
			return nil, err
		}
		if err := r.writeKustomization(path.Join(p.dir, "kustomization.yaml"), k); err != nil {
			return nil, err
		}
		parts[i] = p
	}
	work := make(chan *part)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for p := range work {
				// A file entry is read from beside the synthetic folder, which the root-only
				// restriction forbids; the file holds objects only, so lifting the restriction for
				// its build changes nothing else, and the in-memory filesystem holds nothing but the
				// repository anyway.
				restrictions := types.LoadRestrictionsRootOnly
				if p.file {
					restrictions = types.LoadRestrictionsNone
				}
				p.objs, p.err = r.buildWith(p.dir, restrictions)
				close(p.done)
			}
		})
	}
	// The workers stay at most a few parts ahead of the one handed on: parts wait to be built, not
	// to be handed on, so the fleet is never held whole.
	ahead := make(chan struct{}, 4*max(1, runtime.GOMAXPROCS(0)))
	go func() {
		for _, p := range parts {
			ahead <- struct{}{}
			work <- p
		}
		close(work)
	}()
	defer wg.Wait()

	var errs []error
	for _, p := range parts {
		<-p.done
		<-ahead
		target := path.Join(dir, p.entry)
		if p.err != nil && !p.file {
			// Drop only the broken part of a folder, as a whole render would.
			if dropped, isoErr := r.isolate(target); isoErr == nil && len(dropped) > 0 {
				if p.objs, p.err = r.buildWith(p.dir, types.LoadRestrictionsRootOnly); p.err == nil {
					errs = append(errs, dropped...)
				}
			}
		}
		if p.err != nil {
			if p.file {
				if ferr := r.checkFile(target); ferr != nil {
					errs = append(errs, ferr)
					continue
				}
			}
			errs = append(errs, fmt.Errorf("%s: %w", display(target), p.err))
			continue
		}
		r.out(p.objs)
		p.objs = nil
	}
	return errs, nil
}

// buildsAlone reports whether the folder entry can be built as the top of its own build instead
// of through a synthetic kustomization, and readies it for that: when the top kustomization
// carries nothing for its entries but its buildMetadata (no namespace, labels or annotations), a
// folder's kustomization built on its own renders the same objects as built through one listing
// it, once it has the top's buildMetadata — kustomize reads buildMetadata from the top only, so
// the folder's own, ignored below a top, is replaced. It spares kustomize a level of
// kustomization (its transformer configuration, its origin tracking) for every entry.
func (r *renderer) buildsAlone(folder string, fields map[string]any) bool {
	for f := range fields {
		if f != "apiVersion" && f != "kind" && f != "buildMetadata" {
			return false
		}
	}
	file := r.kustomizationFile(folder)
	if file == "" {
		return false
	}
	k, err := r.readKustomization(file)
	if err != nil {
		return false // the synthetic kustomization's build says what is wrong with it
	}
	if kind, _ := k["kind"].(string); kind != "" && kind != "Kustomization" {
		return false // a Component is not built on its own
	}
	for _, topOnly := range []string{"sortOptions", "openapi"} {
		if _, ok := k[topOnly]; ok {
			return false // kustomize reads it at the top of a build, and ignores it (or reads it otherwise) below
		}
	}
	k["buildMetadata"] = fields["buildMetadata"]
	return r.writeKustomization(file, k) == nil
}
