package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cloud"
	"github.com/driftd/driftd/internal/diff"
)

// The engine is the cloud reconciler's Fleet: the rendered state and a reader of live objects.
var _ cloud.Fleet = (*Engine)(nil)

// Rendered is the desired state of the last good render, or nil before the first. Its objects
// are read from the snapshot, one decoded at a time.
func (e *Engine) Rendered() *cloud.Rendered {
	s := e.snap.Load()
	if s == nil {
		return nil
	}
	s.view.once.Do(func() {
		objs := &renderedObjects{s: s, keys: map[kindNamespace][]diff.Key{}}
		r := &cloud.Rendered{Revision: s.revision, Objects: objs}
		for _, key := range s.order {
			if !capiGroup(key.Group) {
				continue
			}
			kn := kindNamespace{key.Kind, key.Namespace}
			objs.keys[kn] = append(objs.keys[kn], key)
			if key.Kind == "Cluster" && key.Group == diff.GVKCluster.Group {
				r.Clusters = append(r.Clusters, s.desired[key].ref())
			}
		}
		for _, keys := range objs.keys {
			slices.SortFunc(keys, func(a, b diff.Key) int { return strings.Compare(a.String(), b.String()) })
		}
		s.view.r = r
	})
	r := *s.view.r
	r.Degraded = s.degraded
	return &r
}

// renderedObjects are a snapshot's Cluster API objects as the cloud reconciler reads them.
type renderedObjects struct {
	s    *snapshot
	keys map[kindNamespace][]diff.Key
}

type kindNamespace struct{ kind, namespace string }

func capiGroup(group string) bool {
	return group == diff.GVKCluster.Group || strings.HasSuffix(group, "."+diff.GVKCluster.Group)
}

// Get decodes the rendered object of key.
func (o *renderedObjects) Get(key diff.Key) (*unstructured.Unstructured, bool) {
	d, ok := o.s.desired[key]
	if !ok || !capiGroup(key.Group) {
		return nil, false
	}
	return d.object(), true
}

// Keys are the keys of kind in namespace, in the order of their String.
func (o *renderedObjects) Keys(kind, namespace string) []diff.Key {
	return slices.Clone(o.keys[kindNamespace{kind, namespace}])
}

// Live reads obj's live object, whole (nil when it does not exist).
func (e *Engine) Live(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	live, err := e.getLive(ctx, obj)
	if err != nil {
		return nil, err
	}
	return e.whole(ctx, live)
}

// List lists the objects of a kind in a namespace with the labels given, once the kind is readable.
func (e *Engine) List(ctx context.Context, gvk schema.GroupVersionKind, namespace string, labels map[string]string) ([]*unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	opts := []client.ListOption{client.InNamespace(namespace)}
	if len(labels) > 0 {
		opts = append(opts, client.MatchingLabels(labels))
	}
	if e.thin(gvk) {
		// Not cached whole: from the API (the cloud layer lists only kinds cached whole).
		if err := e.deps.Client.List(ctx, list, opts...); err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", gvk.Kind, namespace, err)
		}
	} else if err := e.listReady(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("listing %s in %s: %w", gvk.Kind, namespace, err)
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// listReady lists through the engine's Reader once the kind is readable.
func (e *Engine) listReady(ctx context.Context, list *unstructured.UnstructuredList, opts ...client.ListOption) error {
	if e.deps.Kinds != nil {
		gvk := list.GroupVersionKind()
		gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
		if err := e.deps.Kinds.Ready(ctx, gvk); err != nil {
			return err
		}
	}
	return e.deps.Reader.List(ctx, list, opts...)
}
