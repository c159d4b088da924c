package diff

import (
	"encoding/json"
	"fmt"

	"github.com/fluxcd/pkg/ssa/jsondiff"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// Annotations driftd reads on objects.
const (
	// AnnotationReconcile set to "disabled" makes driftd leave the object alone.
	AnnotationReconcile = "driftd.io/reconcile"
	// AnnotationMode set to "detect" makes driftd only report the object's drift.
	AnnotationMode = "driftd.io/mode"
	// AnnotationPrune set to "enabled" lets driftd delete the object when it is orphaned, even a
	// Cluster, when pruning is on.
	AnnotationPrune = "driftd.io/prune"
)

// Cluster API's own names, as its API package spells them.
const (
	AnnotationPaused            = clusterv1.PausedAnnotation
	AnnotationAutoscalerMin     = clusterv1.AutoscalerMinSizeAnnotation
	AnnotationAutoscalerMax     = clusterv1.AutoscalerMaxSizeAnnotation
	AnnotationReplicasManagedBy = clusterv1.ReplicasManagedByAnnotation
	LabelClusterName            = clusterv1.ClusterNameLabel
)

// Selector picks objects, as Flux's ignore rules do: every field is optional; Group, Version,
// Kind, Name and Namespace are anchored regular expressions, LabelSelector and AnnotationSelector
// label selector expressions. It is the config file's shape of fluxcd/pkg/ssa's jsondiff.Selector.
type Selector struct {
	Group              string `json:"group,omitempty"`
	Version            string `json:"version,omitempty"`
	Kind               string `json:"kind,omitempty"`
	Name               string `json:"name,omitempty"`
	Namespace          string `json:"namespace,omitempty"`
	LabelSelector      string `json:"labelSelector,omitempty"`
	AnnotationSelector string `json:"annotationSelector,omitempty"`
}

// IgnoreRule leaves fields out of the comparison (and out of corrections) for the objects its
// target selects; no target selects every object.
type IgnoreRule struct {
	Paths  []string  `json:"paths"`
	Target *Selector `json:"target,omitempty"`
}

// Rules is a compiled, validated set of ignore rules and mask rules.
type Rules struct {
	rules  []compiledRule
	masks  []compiledRule
	source string
}

// Fingerprint identifies the rules as configured: a verdict reached under other rules is not
// reused (see the engine's remembered verdicts).
func (r *Rules) Fingerprint() string {
	if r == nil {
		return ""
	}
	return r.source
}

type compiledRule struct {
	paths  []string
	target *jsondiff.SelectorRegex // nil selects every object
}

// CompileRules validates the ignore rules and the mask rules (same shape; a mask path may use "*"
// for any list index), naming the rule and the reason for the first that is wrong.
func CompileRules(rules []IgnoreRule, masks ...IgnoreRule) (*Rules, error) {
	src, _ := json.Marshal([][]IgnoreRule{rules, masks})
	out := &Rules{source: string(src)}
	var err error
	if out.rules, err = compile("ignore", rules); err != nil {
		return nil, err
	}
	if out.masks, err = compile("mask", masks); err != nil {
		return nil, err
	}
	return out, nil
}

func compile(what string, rules []IgnoreRule) ([]compiledRule, error) {
	var out []compiledRule
	for i, r := range rules {
		if len(r.Paths) == 0 {
			return nil, fmt.Errorf("%s rule %d: paths is empty", what, i)
		}
		for _, p := range r.Paths {
			if p == "" || p[0] != '/' {
				return nil, fmt.Errorf("%s rule %d: path %q is not a JSON pointer (it must start with /)", what, i, p)
			}
		}
		c := compiledRule{paths: r.Paths}
		if t := r.Target; t != nil {
			sel, err := jsondiff.NewSelectorRegex(&jsondiff.Selector{
				Group: t.Group, Version: t.Version, Kind: t.Kind, Name: t.Name, Namespace: t.Namespace,
				LabelSelector: t.LabelSelector, AnnotationSelector: t.AnnotationSelector,
			})
			if err != nil {
				return nil, fmt.Errorf("%s rule %d: target: %w", what, i, err)
			}
			c.target = sel
		}
		out = append(out, c)
	}
	return out, nil
}

// IgnoredPaths returns the JSON pointers left out for obj: the configured rules that select it and
// the built-in rule that leaves /spec/replicas of a MachineDeployment or MachinePool to the
// cluster-autoscaler (or whatever cluster.x-k8s.io/replicas-managed-by names). obj is the desired
// object; the built-in rule also looks at the live one, since the annotations may be set there.
func (r *Rules) IgnoredPaths(desired, live *unstructured.Unstructured) []string {
	var paths []string
	if r != nil {
		for _, c := range r.rules {
			if c.target.MatchUnstructured(desired) {
				paths = append(paths, c.paths...)
			}
		}
	}
	if replicasManagedElsewhere(desired) || replicasManagedElsewhere(live) {
		paths = append(paths, "/spec/replicas")
	}
	return paths
}

func replicasManagedElsewhere(obj *unstructured.Unstructured) bool {
	if obj == nil {
		return false
	}
	switch obj.GetKind() {
	case "MachineDeployment", "MachinePool":
	default:
		return false
	}
	ann := obj.GetAnnotations()
	_, min := ann[AnnotationAutoscalerMin]
	_, max := ann[AnnotationAutoscalerMax]
	_, managed := ann[AnnotationReplicasManagedBy]
	return (min && max) || managed
}

// KeepLive copies the live values at paths into desired (removing them where live has none), so
// that applying desired leaves ignored fields as they are in the cluster.
func KeepLive(desired, live *unstructured.Unstructured, paths []string) {
	for _, p := range paths {
		fields := splitPointer(p)
		if len(fields) == 0 {
			continue
		}
		var liveVal any
		found := false
		if live != nil {
			liveVal, found, _ = unstructured.NestedFieldNoCopy(live.Object, fields...)
		}
		if !found {
			unstructured.RemoveNestedField(desired.Object, fields...)
			continue
		}
		// SetNestedField copies the value; it fails only where a parent is not a map (a list
		// item path), and then the desired value stays.
		_ = unstructured.SetNestedField(desired.Object, liveVal, fields...)
	}
}
