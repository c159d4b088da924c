package diff

import (
	"reflect"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Masked replaces every secret value (a Secret's data, a secret-bearing field of a Cluster API kind,
// a configured mask) in findings, Events, logs and plan output.
const Masked = "******"

// noise are the fields a server-side dry run changes by itself, or that no Git repository sets.
var noise = map[string]bool{
	"/metadata/managedFields":     true,
	"/metadata/resourceVersion":   true,
	"/metadata/generation":        true,
	"/metadata/creationTimestamp": true,
	"/metadata/uid":               true,
	"/metadata/selfLink":          true,
	"/status":                     true,
}

// Compare returns the fields in which stored (the desired object as the API server would store
// it: the result of a server-side dry-run apply) differs from live, each with who set the live
// value. Paths under ignored JSON pointers are left out; values at or under masked ones (see
// Rules.MaskedPaths) are shown as Masked.
func Compare(stored, live *unstructured.Unstructured, ignored, masked []string) []Field {
	var fields []Field
	walk("", stored.Object, live.Object, func(path string, desired, liveVal any) {
		if isIgnored(path, ignored) {
			return
		}
		fields = append(fields, Field{Path: path, Desired: desired, Live: liveVal})
	})
	if len(fields) == 0 {
		return nil
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Path < fields[j].Path })
	owners := newOwnerIndex(live)
	for i := range fields {
		owners.attribute(&fields[i])
	}
	maskFields(fields, masked)
	return fields
}

// CompareSet is Compare for an object the API server would not dry-run (it rejected it): only the
// fields Git sets are compared with live, as written in Git (no defaulting), so a rejected change
// still says which fields differ and who set their live values. live may be nil (then every field
// Git sets is reported against nothing).
func CompareSet(desired, live *unstructured.Unstructured, ignored, masked []string) []Field {
	var liveObj map[string]any
	if live != nil {
		liveObj = live.Object
	}
	var fields []Field
	walk("", desired.Object, liveObj, func(path string, d, l any) {
		if d == nil || isIgnored(path, ignored) {
			return // a field only live has is not something Git asks for
		}
		fields = append(fields, Field{Path: path, Desired: d, Live: l})
	})
	sort.Slice(fields, func(i, j int) bool { return fields[i].Path < fields[j].Path })
	if live != nil {
		owners := newOwnerIndex(live)
		for i := range fields {
			owners.attribute(&fields[i])
		}
	}
	maskFields(fields, masked)
	return fields
}

func isIgnored(path string, ignored []string) bool {
	for _, ig := range ignored {
		if path == ig || strings.HasPrefix(path, ig+"/") {
			return true
		}
	}
	return false
}

// walk calls found for every leaf where a and b differ; a map present on one side only is
// compared field by field against nothing. Lists of different lengths are reported whole.
func walk(path string, a, b any, found func(path string, a, b any)) {
	if noise[path] || isTrackingPath(path) {
		return
	}
	if bm, ok := b.(map[string]any); ok && a == nil {
		a = map[string]any{} // absent on one side: compare field by field, so noise stays out
		if len(bm) == 0 {
			return
		}
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok && b != nil {
			found(path, a, b)
			return
		}
		if len(av) == 0 && len(bv) == 0 {
			return
		}
		for k, x := range av {
			walk(path+"/"+escape(k), x, bv[k], found)
		}
		for k, y := range bv {
			if _, ok := av[k]; !ok {
				walk(path+"/"+escape(k), nil, y, found)
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			if !equal(a, b) {
				found(path, a, b)
			}
			return
		}
		for i := range av {
			walk(path+"/"+strconv.Itoa(i), av[i], bv[i], found)
		}
	default:
		if a == nil && b == nil {
			return
		}
		if a == nil || b == nil {
			if emptyValue(a) && emptyValue(b) {
				return
			}
			found(path, a, b)
			return
		}
		if !equal(a, b) {
			found(path, a, b)
		}
	}
}

// emptyValue treats an absent field and an empty map or list as the same: the API server drops
// empty objects in places and keeps them in others.
func emptyValue(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

func equal(a, b any) bool {
	if an, ok := number(a); ok {
		if bn, ok := number(b); ok {
			return an == bn
		}
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// escape escapes a JSON pointer token (RFC 6901: ~ as ~0, / as ~1).
func escape(token string) string { return pointerEscaper.Replace(token) }

// unescape reverses escape.
func unescape(token string) string { return pointerUnescaper.Replace(token) }

// Built once: a Replacer's first use builds its tables, which cost more than the replacing of
// every field of an object.
var (
	pointerEscaper   = strings.NewReplacer("~", "~0", "/", "~1")
	pointerUnescaper = strings.NewReplacer("~1", "/", "~0", "~")
)

// splitPointer returns the unescaped tokens of a JSON pointer.
func splitPointer(p string) []string {
	if p == "" || p == "/" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		parts[i] = unescape(parts[i])
	}
	return parts
}

func isSecret(obj *unstructured.Unstructured) bool {
	return obj != nil && obj.GetKind() == "Secret" && obj.GetAPIVersion() == "v1"
}

// maskValue hides a value but keeps whether it is there.
func maskValue(v any) any {
	if v == nil {
		return nil
	}
	return Masked
}
