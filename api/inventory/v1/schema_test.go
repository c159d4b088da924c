package v1

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSchemaDescribesTheTypes keeps schema.json, which endpoints in other languages are written
// against, equal to the types driftd decodes: the same properties, and required exactly where a
// field has no omitempty.
func TestSchemaDescribesTheTypes(t *testing.T) {
	data, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs map[string]struct {
			Required   []string                   `json:"required"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{ClusterRef{}, ObjectRef{}, RequestedCluster{}, SnapshotRequest{}, Instance{}, NodePool{},
		UnavailableCluster{}, SnapshotResponse{}, Status{}} {
		typ := reflect.TypeOf(v)
		def, ok := schema.Defs[typ.Name()]
		if !ok {
			t.Errorf("schema.json has no definition of %s", typ.Name())
			continue
		}
		fields, required := jsonFields(typ)
		var props []string
		for p := range def.Properties {
			props = append(props, p)
		}
		slices.Sort(props)
		if !slices.Equal(props, fields) {
			t.Errorf("%s: schema properties %v, type fields %v", typ.Name(), props, fields)
		}
		want := slices.Sorted(slices.Values(def.Required))
		if typ.Name() == "Status" || typ.Name() == "SnapshotResponse" {
			// apiVersion is always sent by driftd's types; the schema does not require it of an
			// error body. complete and instances are required of every page.
			required = slices.DeleteFunc(required, func(s string) bool { return typ.Name() == "Status" && s == "apiVersion" })
		}
		if !slices.Equal(want, required) {
			t.Errorf("%s: schema requires %v, the type %v", typ.Name(), want, required)
		}
	}
}

func jsonFields(typ reflect.Type) (fields, required []string) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && strings.Contains(opts, "inline") {
			inner, req := jsonFields(f.Type)
			fields, required = append(fields, inner...), append(required, req...)
			continue
		}
		fields = append(fields, name)
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	slices.Sort(fields)
	slices.Sort(required)
	return fields, required
}
