package diff

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// owner is one managedFields entry.
type owner struct {
	manager   string
	operation string
	time      *time.Time
}

// ownerIndex maps the JSON pointers of a live object's fields to the manager that owns them.
type ownerIndex map[string][]owner

// newOwnerIndex reads metadata.managedFields of live, turning each manager's field set into JSON
// pointers resolved against the live object (list items named by key become indices).
func newOwnerIndex(live *unstructured.Unstructured) ownerIndex {
	idx := ownerIndex{}
	for _, mf := range live.GetManagedFields() {
		if mf.FieldsV1 == nil || mf.Subresource != "" {
			continue
		}
		set := &fieldpath.Set{}
		if err := set.FromJSON(bytes.NewReader(mf.FieldsV1.Raw)); err != nil {
			continue
		}
		o := owner{manager: mf.Manager, operation: string(mf.Operation)}
		if mf.Time != nil {
			t := mf.Time.Time
			o.time = &t
		}
		set.Leaves().Iterate(func(p fieldpath.Path) {
			if ptr, ok := pointerOf(p, live.Object); ok {
				idx[ptr] = append(idx[ptr], o)
			}
		})
	}
	return idx
}

// attribute fills in who set f's live value: the owner of the field itself, else of the nearest
// enclosing field owned as a whole (an atomic list or map). Where several managers share a
// field, one that is not driftd is named, since driftd does not drift its own fields.
func (idx ownerIndex) attribute(f *Field) {
	for p := f.Path; ; {
		if owners := idx[p]; len(owners) > 0 {
			best := owners[0]
			for _, o := range owners[1:] {
				if best.manager == fieldManager || (o.manager != fieldManager && later(o.time, best.time)) {
					best = o
				}
			}
			f.Manager, f.Operation, f.Time = best.manager, best.operation, best.time
			return
		}
		i := strings.LastIndex(p, "/")
		if i <= 0 {
			return
		}
		p = p[:i]
	}
}

// fieldManager is the field manager driftd applies with.
const fieldManager = "driftd"

func later(a, b *time.Time) bool { return a != nil && (b == nil || a.After(*b)) }

// pointerOf resolves a managedFields path against obj into a JSON pointer.
func pointerOf(p fieldpath.Path, obj any) (string, bool) {
	var sb strings.Builder
	cur := obj
	for _, pe := range p {
		switch {
		case pe.FieldName != nil:
			sb.WriteString("/" + escape(*pe.FieldName))
			m, _ := cur.(map[string]any)
			cur = m[*pe.FieldName]
		case pe.Index != nil:
			sb.WriteString("/" + strconv.Itoa(*pe.Index))
			l, _ := cur.([]any)
			if *pe.Index >= len(l) {
				return "", false
			}
			cur = l[*pe.Index]
		default:
			l, ok := cur.([]any)
			if !ok {
				return "", false
			}
			i := indexOf(pe, l)
			if i < 0 {
				return "", false
			}
			sb.WriteString("/" + strconv.Itoa(i))
			cur = l[i]
		}
	}
	return sb.String(), true
}

// indexOf finds the list item a key or value path element names.
func indexOf(pe fieldpath.PathElement, l []any) int {
	for i, item := range l {
		switch {
		case pe.Key != nil:
			m, ok := item.(map[string]any)
			if !ok {
				continue
			}
			match := true
			for _, f := range *pe.Key {
				if !value.Equals(f.Value, value.NewValueInterface(m[f.Name])) {
					match = false
					break
				}
			}
			if match {
				return i
			}
		case pe.Value != nil:
			if value.Equals(*pe.Value, value.NewValueInterface(item)) {
				return i
			}
		}
	}
	return -1
}
