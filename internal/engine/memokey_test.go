package engine

import (
	"fmt"
	"hash/fnv"
	"sort"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/diff"
)

// TestTheMemoKeyOfAnObjectIsTheOneEarlierReleasesStored: the verdicts a driftd stored as it
// stopped are found by its successor only if the memo key of an unchanged object is the same: the
// metadata hash is FNV-1a over "key=value\x00" of the labels, then the annotations, each in key
// order and closed by a 1 byte, as earlier releases computed it with hash/fnv and fmt.
func TestTheMemoKeyOfAnObjectIsTheOneEarlierReleasesStored(t *testing.T) {
	earlier := func(live *unstructured.Unstructured) uint64 {
		h := fnv.New64a()
		for _, m := range []map[string]string{live.GetLabels(), live.GetAnnotations()} {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(h, "%s=%s\x00", k, m[k])
			}
			h.Write([]byte{1})
		}
		return h.Sum64()
	}
	d := &desiredObject{hash: 42}
	for _, tt := range []struct {
		name                string
		labels, annotations map[string]string
		generation          int64
		want                string
	}{
		{"no metadata", nil, nil, 0, "rv7"},
		{"labels and annotations", map[string]string{"cluster.x-k8s.io/cluster-name": "c00001", "tier": "gold", "a": ""},
			map[string]string{"driftd.io/rollout-wave": "2", "note": "ünïcode ✓"}, 3, "g3"},
		{"a label's value that reads as an annotation", map[string]string{"k": "v\x00k2=v2"}, map[string]string{"k2": "v2"}, 1, "g1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			live := &unstructured.Unstructured{Object: map[string]any{}}
			live.SetUID("u-1")
			live.SetResourceVersion("7")
			live.SetGeneration(tt.generation)
			live.SetLabels(tt.labels)
			live.SetAnnotations(tt.annotations)
			got := memoKeyOf(d, live)
			want := memoKey{desired: 42, uid: "u-1", version: tt.want, metadata: earlier(live)}
			if got != want {
				t.Errorf("memo key %+v, want %+v", got, want)
			}
			// The quiet cycle's path reads a kind cached as metadata in place: the same key.
			meta := metav1.ObjectMeta{UID: "u-1", ResourceVersion: "7", Generation: tt.generation, Labels: tt.labels, Annotations: tt.annotations}
			if got := memoKeyOfMeta(d, &meta); got != want {
				t.Errorf("memo key from the metadata %+v, want %+v", got, want)
			}
			if got := memoKeyOf(d, thinObject(diff.GVKMachine, &meta)); got != want {
				t.Errorf("memo key of the object built from the metadata %+v, want %+v", got, want)
			}
		})
	}
	if k := memoKeyOf(d, nil); k != (memoKey{desired: 42}) {
		t.Errorf("memo key of a missing object %+v", k)
	}
}
