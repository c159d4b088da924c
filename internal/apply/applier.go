package apply

import (
	"context"
	"fmt"
	"strings"

	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the field manager of every driftd write.
const FieldManager = "driftd"

// Result is the outcome of one write.
type Result struct {
	// Object is the object written.
	Object *unstructured.Unstructured
	// Action is ssa's verdict: created, configured, unchanged, deleted.
	Action string
	// Err is the API error, naming the object.
	Err error
}

// Applier writes to the management cluster.
type Applier struct {
	rm     *ssa.ResourceManager
	client client.Client
}

// New returns an Applier writing through c.
func New(c client.Client) *Applier {
	return &Applier{rm: ssa.NewResourceManager(c, nil, ssa.Owner{Field: FieldManager, Group: "driftd.io"}), client: c}
}

// Stages is how many stages Stage returns.
const Stages = 4

// Stage orders writes so that what is referred to exists before what refers to it: namespaces and
// CRDs (stage 0: everything else may live in them), then classes, templates, identities, Secrets
// and ConfigMaps, then Clusters, then everything else.
func Stage(obj *unstructured.Unstructured) int {
	gv, _ := schema.ParseGroupVersion(obj.GetAPIVersion())
	kind := obj.GetKind()
	switch {
	case gv.Group == "" && kind == "Namespace", kind == "CustomResourceDefinition":
		return 0
	case kind == "ClusterClass", strings.HasSuffix(kind, "Template"), strings.HasSuffix(kind, "ClusterTemplate"),
		gv.Group == "" && (kind == "Secret" || kind == "ConfigMap"), strings.HasSuffix(kind, "Identity"):
		return 1
	case gv.Group == "cluster.x-k8s.io" && kind == "Cluster":
		return 2
	}
	return 3
}

// Apply server-side applies obj with the field manager driftd and ownership forced. fluxcd/pkg/ssa
// dry-runs it first and writes nothing when the result equals the live object. Objects are never
// recreated: an immutable field change is an error (see Rejected and Hint).
func (a *Applier) Apply(ctx context.Context, obj *unstructured.Unstructured) Result {
	entry, err := a.rm.Apply(ctx, obj, ssa.ApplyOptions{Force: false})
	r := Result{Object: obj, Err: err}
	if err == nil {
		r.Action = string(entry.Action)
	}
	return r
}

// Create writes obj, which a dry run found missing, in one request: the server-side apply
// fluxcd/pkg/ssa's Apply ends with (field manager driftd, ownership forced), without the read and
// the second dry run it makes first to skip a write that changes nothing — a missing object is
// always written, and those two requests would triple the cost of creating a fleet. Object is
// the object as stored.
func (a *Applier) Create(ctx context.Context, obj *unstructured.Unstructured) Result {
	out := obj.DeepCopy()
	err := a.client.Patch(ctx, out, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership)
	if err != nil {
		return Result{Object: obj, Err: fmt.Errorf("%s apply failed: %w", utils.FmtUnstructured(obj), err)}
	}
	return Result{Object: out, Action: string(ssa.CreatedAction)}
}

// Delete deletes an orphan, letting its owners' garbage collection run in the background.
func (a *Applier) Delete(ctx context.Context, obj *unstructured.Unstructured) Result {
	obj = obj.DeepCopy() // it may be the cache's own copy
	err := a.client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground),
		client.Preconditions{UID: ptr(obj.GetUID())})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("%s delete failed: %w", utils.FmtUnstructured(obj), err)
	}
	return Result{Object: obj, Action: "deleted", Err: err}
}

// DryRun returns obj as the API server would store it after a server-side apply by driftd,
// without storing it. The API server's validation error (schema, immutable fields) is returned as is.
func DryRun(ctx context.Context, c client.Client, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	out := obj.DeepCopy()
	err := c.Patch(ctx, out, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership, client.DryRunAll)
	return out, err
}

func ptr[T any](v T) *T { return &v }
