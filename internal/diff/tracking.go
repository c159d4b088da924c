package diff

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// OwnerLabel marks the objects a driftd instance applied, so that it can list its own objects
// cheaply (a label selector on the server). A label alone proves nothing: controllers copy labels
// (Cluster API's topology controller clones a ClusterClass's templates with theirs), so an object is
// driftd's only when it also carries a tracking id naming that very object (TrackingAnnotation).
// Both are bookkeeping, not drift: their absence on a live object is never reported.
const OwnerLabel = "driftd.io/owner"

// TrackingAnnotation holds an object's tracking id, "<owner>:<group>/<kind>:<namespace>/<name>",
// the way Argo CD's argocd.argoproj.io/tracking-id does: a copy of the object under another name
// or kind carries an id that does not name it, so it is never taken for driftd's own.
const TrackingAnnotation = "driftd.io/tracking-id"

// TrackingID is the tracking id of the object with key k applied by owner.
func TrackingID(owner string, k Key) string {
	return owner + ":" + k.Group + "/" + k.Kind + ":" + k.Namespace + "/" + k.Name
}

// Track sets owner's label and tracking id on obj, which must already have its final namespace.
func Track(obj *unstructured.Unstructured, owner string) {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[OwnerLabel] = owner
	obj.SetLabels(labels)
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[TrackingAnnotation] = TrackingID(owner, KeyOf(obj))
	obj.SetAnnotations(ann)
}

// Tracked reports whether obj is owner's own: its tracking id names obj itself. An object that
// carries owner's label but another object's id is a controller's copy, and one without an id was
// never applied by this driftd.
func Tracked(obj *unstructured.Unstructured, owner string) bool {
	id, ok := obj.GetAnnotations()[TrackingAnnotation]
	return ok && id == TrackingID(owner, KeyOf(obj))
}

// trackingPaths are the JSON pointers of the tracking metadata, left out of every comparison.
var trackingPaths = []string{
	"/metadata/labels/" + escape(OwnerLabel),
	"/metadata/annotations/" + escape(TrackingAnnotation),
}

func isTrackingPath(p string) bool {
	for _, t := range trackingPaths {
		if p == t {
			return true
		}
	}
	return false
}
