package diff

import (
	"fmt"
	"regexp"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Annotations and labels driftd reads on objects.
const (
	// AnnotationReconcile set to "disabled" makes driftd leave the object alone.
	AnnotationReconcile = "driftd.io/reconcile"
	// AnnotationMode set to "detect" makes driftd only report the object's drift.
	AnnotationMode = "driftd.io/mode"
	// AnnotationPrune set to "enabled" lets driftd delete the object when it is orphaned, even a
	// Cluster, when pruning is on.
	AnnotationPrune = "driftd.io/prune"

	// AnnotationPaused is Cluster API's pause annotation.
	AnnotationPaused = "cluster.x-k8s.io/paused"
	// AnnotationAutoscalerMin and AnnotationAutoscalerMax are the cluster-autoscaler's node group bounds.
	AnnotationAutoscalerMin = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
	AnnotationAutoscalerMax = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
	// AnnotationReplicasManagedBy says an external system owns the replicas of a MachinePool.
	AnnotationReplicasManagedBy = "cluster.x-k8s.io/replicas-managed-by"
	// LabelClusterName is Cluster API's label naming an object's cluster.
	LabelClusterName = "cluster.x-k8s.io/cluster-name"
)

// Selector picks objects, as Flux's ignore rules do. Empty fields match everything; Name,
// Namespace and Kind are anchored regular expressions.
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

// Rules is a compiled, validated set of ignore rules.
type Rules struct {
	rules []compiledRule
}

type compiledRule struct {
	paths                 []string
	group, version        string
	kind, name, namespace *regexp.Regexp
	labels, annotations   labels.Selector
	hasTarget             bool
}

// CompileRules validates rules, naming the rule and the reason for the first that is wrong.
func CompileRules(rules []IgnoreRule) (*Rules, error) {
	out := &Rules{}
	for i, r := range rules {
		if len(r.Paths) == 0 {
			return nil, fmt.Errorf("ignore rule %d: paths is empty", i)
		}
		for _, p := range r.Paths {
			if p == "" || p[0] != '/' {
				return nil, fmt.Errorf("ignore rule %d: path %q is not a JSON pointer (it must start with /)", i, p)
			}
		}
		c := compiledRule{paths: r.Paths}
		if t := r.Target; t != nil {
			c.hasTarget = true
			c.group, c.version = t.Group, t.Version
			var err error
			if c.kind, err = anchored(t.Kind); err != nil {
				return nil, fmt.Errorf("ignore rule %d: target.kind: %w", i, err)
			}
			if c.name, err = anchored(t.Name); err != nil {
				return nil, fmt.Errorf("ignore rule %d: target.name: %w", i, err)
			}
			if c.namespace, err = anchored(t.Namespace); err != nil {
				return nil, fmt.Errorf("ignore rule %d: target.namespace: %w", i, err)
			}
			if t.LabelSelector != "" {
				if c.labels, err = labels.Parse(t.LabelSelector); err != nil {
					return nil, fmt.Errorf("ignore rule %d: target.labelSelector: %w", i, err)
				}
			}
			if t.AnnotationSelector != "" {
				if c.annotations, err = labels.Parse(t.AnnotationSelector); err != nil {
					return nil, fmt.Errorf("ignore rule %d: target.annotationSelector: %w", i, err)
				}
			}
		}
		out.rules = append(out.rules, c)
	}
	return out, nil
}

func anchored(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

func (c compiledRule) matches(obj *unstructured.Unstructured) bool {
	if !c.hasTarget {
		return true
	}
	gv, _ := schema.ParseGroupVersion(obj.GetAPIVersion())
	switch {
	case c.group != "" && c.group != gv.Group,
		c.version != "" && c.version != gv.Version,
		c.kind != nil && !c.kind.MatchString(obj.GetKind()),
		c.name != nil && !c.name.MatchString(obj.GetName()),
		c.namespace != nil && !c.namespace.MatchString(obj.GetNamespace()),
		c.labels != nil && !c.labels.Matches(labels.Set(obj.GetLabels())),
		c.annotations != nil && !c.annotations.Matches(labels.Set(obj.GetAnnotations())):
		return false
	}
	return true
}

// IgnoredPaths returns the JSON pointers left out for obj: the configured rules that select it and
// the built-in rule that leaves /spec/replicas of a MachineDeployment or MachinePool to the
// cluster-autoscaler (or whatever cluster.x-k8s.io/replicas-managed-by names). obj is the desired
// object; the built-in rule also looks at the live one, since the annotations may be set there.
func (r *Rules) IgnoredPaths(desired, live *unstructured.Unstructured) []string {
	var paths []string
	if r != nil {
		for _, c := range r.rules {
			if c.matches(desired) {
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
		tokens := splitPointer(p)
		if len(tokens) == 0 {
			continue
		}
		var liveVal any
		found := false
		if live != nil {
			liveVal, found = lookup(live.Object, tokens)
		}
		if found {
			setPath(desired.Object, tokens, liveVal)
		} else {
			removePath(desired.Object, tokens)
		}
	}
}

func lookup(obj map[string]any, tokens []string) (any, bool) {
	var cur any = obj
	for _, t := range tokens {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[t]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func setPath(obj map[string]any, tokens []string, v any) {
	cur := obj
	for _, t := range tokens[:len(tokens)-1] {
		next, ok := cur[t].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[t] = next
		}
		cur = next
	}
	cur[tokens[len(tokens)-1]] = deepCopy(v)
}

func removePath(obj map[string]any, tokens []string) {
	cur := obj
	for _, t := range tokens[:len(tokens)-1] {
		next, ok := cur[t].(map[string]any)
		if !ok {
			return
		}
		cur = next
	}
	delete(cur, tokens[len(tokens)-1])
}

func deepCopy(v any) any {
	return (&unstructured.Unstructured{Object: map[string]any{"v": v}}).DeepCopy().Object["v"]
}
