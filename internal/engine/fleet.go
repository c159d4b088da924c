package engine

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cloud"
	"github.com/driftd/driftd/internal/diff"
)

// The engine is the cloud reconciler's Fleet: the rendered state and a reader of live objects.
var _ cloud.Fleet = (*Engine)(nil)

// Rendered is the desired state of the last good render, or nil before the first.
func (e *Engine) Rendered() *cloud.Rendered {
	s := e.snap.Load()
	if s == nil {
		return nil
	}
	s.view.once.Do(func() {
		r := &cloud.Rendered{Revision: s.revision, Objects: map[diff.Key]*unstructured.Unstructured{}}
		for key, d := range s.desired {
			if key.Group == diff.GVKCluster.Group || strings.HasSuffix(key.Group, "."+diff.GVKCluster.Group) {
				r.Objects[key] = d.object()
			}
		}
		for _, key := range s.order {
			if key.Kind == "Cluster" && key.Group == diff.GVKCluster.Group {
				r.Clusters = append(r.Clusters, r.Objects[key])
			}
		}
		s.view.r = r
	})
	r := *s.view.r
	r.Degraded = s.degraded
	return &r
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
