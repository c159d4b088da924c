package diff

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Mode is driftd's global mode.
type Mode string

const (
	// ModeCorrect reports drift and corrects what it may.
	ModeCorrect Mode = "correct"
	// ModeDetect reports drift and writes nothing to the cluster or the cloud.
	ModeDetect Mode = "detect"
)

// ParseMode validates a --mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeCorrect, ModeDetect:
		return Mode(s), nil
	}
	return "", fmt.Errorf("mode %q is neither %q nor %q", s, ModeCorrect, ModeDetect)
}

// Policy is what the configuration allows.
type Policy struct {
	Mode Mode
	// Prune lets driftd delete orphaned objects (never a Cluster unless it opts in).
	Prune bool
}

// Situation is what a decision about one object depends on beyond the object itself.
type Situation struct {
	// Cluster is the Cluster API cluster the object belongs to, or "".
	Cluster string
	// Paused: the cluster is paused (spec.paused or the pause annotation, live or in Git).
	Paused bool
	// Deleting: the cluster, or the object itself, is being deleted (deletionTimestamp set).
	Deleting bool
	// Degraded says why corrections are off fleet-wide (the source or its render failed), or "".
	Degraded string
	// Rejected is the API server's verdict on the object as Git has it (its dry run or its write
	// was refused for good), in words, or "".
	Rejected string
	// Held says why the object's correction waits (a contested field, see Contest), or "".
	Held string
	// Paced says why the object's change, which replaces Machines, waits for its cluster's turn
	// in a paced rollout (see Pace), or "".
	Paced string
	// Pending says what is created before the object (its Namespace, its CustomResourceDefinition),
	// or "".
	Pending string
}

// Decide decides about a spec finding of class (Missing or Modified) on an object (desired and/or
// live may be nil) in situation s. Orphans are decided by DecidePrune, the cloud layer by
// PlanReplacements.
func Decide(class Class, desired, live *unstructured.Unstructured, s Situation, p Policy) Decision {
	d := decide(class, desired, live, s, p)
	d.Reason = joinReason(d.Reason, s.Pending)
	return d
}

func decide(class Class, desired, live *unstructured.Unstructured, s Situation, p Policy) Decision {
	if annotation(desired, live, AnnotationReconcile) == "disabled" {
		return Decision{Action: ActionIgnored, Reason: joinReason(AnnotationReconcile+": disabled", s.Rejected)}
	}
	correction := ActionApply
	if class == ClassMissing {
		correction = ActionCreate
	}
	var d Decision
	switch {
	case p.Mode == ModeDetect:
		d = reported("detect mode")
	case annotation(desired, live, AnnotationMode) == string(ModeDetect):
		d = reported(AnnotationMode + ": detect")
	case s.Deleting && live != nil && live.GetDeletionTimestamp() != nil:
		d = reported("being deleted: driftd writes nothing to an object being deleted")
	case s.Deleting:
		d = reported(fmt.Sprintf("cluster %s is being deleted: nothing of it is written until the deletion ends", s.Cluster))
	case s.Degraded != "":
		d = reported("no corrections while " + s.Degraded)
	case s.Paused:
		d = blocked(BlockerClusterPaused, fmt.Sprintf("cluster %s is paused", s.Cluster))
	case s.Rejected != "":
		return blocked(BlockerRejected, s.Rejected)
	case s.Held != "":
		return blocked(BlockerContested, s.Held)
	case s.Paced != "":
		return Decision{Action: ActionHeld, Reason: s.Paced}
	default:
		return corrected(correction, "")
	}
	// Not corrected now for another reason: the verdict is still worth saying.
	d.Reason = joinReason(d.Reason, s.Rejected)
	return d
}

// joinReason joins two reasons, either of which may be empty.
func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// annotation returns key's value on desired, else on live.
func annotation(desired, live *unstructured.Unstructured, key string) string {
	for _, o := range []*unstructured.Unstructured{desired, live} {
		if o != nil {
			if v, ok := o.GetAnnotations()[key]; ok {
				return v
			}
		}
	}
	return ""
}

// IsPaused reports whether a Cluster is paused (spec.paused or the pause annotation).
func IsPaused(cluster *unstructured.Unstructured) bool {
	if cluster == nil {
		return false
	}
	if _, ok := cluster.GetAnnotations()[AnnotationPaused]; ok {
		return true
	}
	paused, _, _ := unstructured.NestedBool(cluster.Object, "spec", "paused")
	return paused
}

// Key identifies an object across versions: group, kind, namespace and name.
type Key struct {
	Group, Kind, Namespace, Name string
}

// KeyOf returns obj's key.
func KeyOf(obj *unstructured.Unstructured) Key {
	gv, _ := schema.ParseGroupVersion(obj.GetAPIVersion())
	return Key{Group: gv.Group, Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// String is driftd's one way of naming an object in messages: "Kind/namespace/name", or
// "Kind/name" for a cluster-scoped object — the format fluxcd/pkg/ssa names objects in its own
// errors, so that both read alike.
func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Clusters maps objects to the Cluster API cluster they belong to.
type Clusters map[Key]string

// IndexClusters finds the cluster of each object: a Cluster is its own, an object with the
// cluster-name label or spec.clusterName names its cluster, and what a Cluster, a control plane or
// a MachineDeployment/MachinePool references (infrastructure, control plane, templates, bootstrap
// configs) belongs to the referrer's cluster. Shared objects (a ClusterClass) belong to none.
func IndexClusters(objs []*unstructured.Unstructured) Clusters {
	links := make([]Links, len(objs))
	for i, o := range objs {
		links[i] = LinksOf(o)
	}
	return IndexLinks(links)
}

// Links is what IndexClusters reads of an object: its key, the cluster it names itself (or "")
// and the objects it references. A render is indexed from its objects' links, not the objects:
// the engine keeps no decoded render.
type Links struct {
	Key     Key
	Cluster string
	Refs    []Key
}

// LinksOf returns o's links.
func LinksOf(o *unstructured.Unstructured) Links {
	l := Links{Key: KeyOf(o), Cluster: directCluster(o)}
	if refs := references(o); len(refs) > 0 {
		for i := range refs {
			refs[i].Namespace = o.GetNamespace()
		}
		l.Refs = refs
	}
	return l
}

// IndexLinks is IndexClusters over the objects' links.
func IndexLinks(links []Links) Clusters {
	c := Clusters{}
	for _, l := range links {
		if l.Cluster != "" {
			c[l.Key] = l.Cluster
		}
	}
	// References, two rounds: Cluster → control plane → its machine template.
	for range 2 {
		for _, l := range links {
			cluster, ok := c[l.Key]
			if !ok {
				continue
			}
			for _, ref := range l.Refs {
				if _, known := c[ref]; !known {
					c[ref] = cluster
				}
			}
		}
	}
	return c
}

func directCluster(o *unstructured.Unstructured) string {
	if o.GetKind() == "Cluster" && o.GetAPIVersion() != "" && groupOf(o) == "cluster.x-k8s.io" {
		return o.GetName()
	}
	if name := o.GetLabels()[LabelClusterName]; name != "" {
		return name
	}
	name, _, _ := unstructured.NestedString(o.Object, "spec", "clusterName")
	return name
}

// OwningCluster is the cluster an object names itself (IndexClusters' direct rule) or that owns
// it through an owner reference, as Cluster API sets on the parts of a Cluster; "" when neither.
func OwningCluster(o *unstructured.Unstructured) string {
	if name := directCluster(o); name != "" {
		return name
	}
	for _, ref := range o.GetOwnerReferences() {
		gv, _ := schema.ParseGroupVersion(ref.APIVersion)
		if ref.Kind == "Cluster" && gv.Group == "cluster.x-k8s.io" {
			return ref.Name
		}
	}
	return ""
}

func groupOf(o *unstructured.Unstructured) string {
	gv, _ := schema.ParseGroupVersion(o.GetAPIVersion())
	return gv.Group
}

// referencePaths are where Cluster API objects (v1beta2 and v1beta1) reference others.
var referencePaths = [][]string{
	{"spec", "infrastructureRef"},
	{"spec", "controlPlaneRef"},
	{"spec", "machineTemplate", "spec", "infrastructureRef"},
	{"spec", "machineTemplate", "infrastructureRef"},
	{"spec", "template", "spec", "infrastructureRef"},
	{"spec", "template", "spec", "bootstrap", "configRef"},
}

func references(o *unstructured.Unstructured) []Key {
	var keys []Key
	for _, p := range referencePaths {
		ref, ok, _ := unstructured.NestedMap(o.Object, p...)
		if !ok {
			continue
		}
		kind, _ := ref["kind"].(string)
		name, _ := ref["name"].(string)
		group, _ := ref["apiGroup"].(string)
		if group == "" { // v1beta1 references carry an apiVersion
			if av, _ := ref["apiVersion"].(string); av != "" {
				gv, _ := schema.ParseGroupVersion(av)
				group = gv.Group
			}
		}
		if kind != "" && name != "" {
			keys = append(keys, Key{Group: group, Kind: kind, Name: name})
		}
	}
	return keys
}
