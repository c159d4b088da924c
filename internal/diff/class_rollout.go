package diff

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TemplateChange is a template reference of a ClusterClass that a revision changes.
type TemplateChange struct {
	// Class is the MachineDeployment class it belongs to; "" for the control plane.
	Class string
	// Field is the reference's path in the ClusterClass's spec; Old and New the templates'
	// kind/name.
	Field, Old, New string
	// OldRef and NewRef are the references (apiVersion, kind, name).
	OldRef, NewRef map[string]any
	// OldSpec and NewSpec are the spec of the old template (live) and of the new one (as the
	// revision has it); Missing says one of them could not be read.
	OldSpec, NewSpec any
	Missing          bool
}

// ClassUser is a MachineDeployment topology of a Cluster that uses a ClusterClass (or, with Worker
// "", its control plane), and its live Machines.
type ClassUser struct {
	Cluster       string // namespace/name
	Worker, Class string
	Machines      int
}

// ClassTemplateChanges lists the template references of a ClusterClass that next changes from
// live: each MachineDeployment class's bootstrap and infrastructure templates, and the control
// plane's machine infrastructure and control-plane templates.
func ClassTemplateChanges(live, next *unstructured.Unstructured) []TemplateChange {
	var out []TemplateChange
	refOf := func(u *unstructured.Unstructured, path ...string) (string, map[string]any) {
		m, ok, _ := unstructured.NestedMap(u.Object, path...)
		if !ok {
			return "", nil
		}
		return fmt.Sprintf("%v/%v", m["kind"], m["name"]), m
	}
	change := func(class, field string, l, n *unstructured.Unstructured, path ...string) {
		o, om := refOf(l, path...)
		nw, nm := refOf(n, path...)
		if o != nw && o != "" && nw != "" {
			out = append(out, TemplateChange{Class: class, Field: field, Old: o, New: nw, OldRef: om, NewRef: nm})
		}
	}
	for _, f := range [][]string{{"controlPlane", "machineInfrastructure", "templateRef"}, {"controlPlane", "templateRef"}} {
		path := append([]string{"spec"}, f...)
		change("", strings.Join(path, "."), live, next, path...)
	}
	classes := func(u *unstructured.Unstructured) map[string]*unstructured.Unstructured {
		items, _, _ := unstructured.NestedSlice(u.Object, "spec", "workers", "machineDeployments")
		byClass := map[string]*unstructured.Unstructured{}
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				byClass[fmt.Sprint(m["class"])] = &unstructured.Unstructured{Object: m}
			}
		}
		return byClass
	}
	before, after := classes(live), classes(next)
	names := make([]string, 0, len(after))
	for c := range after {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		old, ok := before[c]
		if !ok {
			continue // a new class: no Cluster uses it yet
		}
		for _, f := range []string{"bootstrap", "infrastructure"} {
			change(c, "spec.workers.machineDeployments["+c+"]."+f+".templateRef", old, after[c], f, "templateRef")
		}
	}
	return out
}

// ClassRollout says what a ClusterClass's template changes do to the Machines of the Clusters that
// use it (users), by Cluster API's topology rule: a Cluster's clone of a template is rotated (a new
// name, so its MachineDeployment or control plane rolls) when the new template's spec differs from
// the old one's; when only the name and metadata differ, the clones are patched in place and
// nothing rolls. A class with patches is not judged: they may change the templates per Cluster.
// A control-plane template with another spec is patched into the KubeadmControlPlane, whose own
// rules decide: unknown here.
func ClassRollout(changes []TemplateChange, users []ClassUser, patched bool) *Rollout {
	return classRollout(changes, users, patched, true)
}

// classRollout is ClassRollout; shared says the change is one object for all its users (a
// ClusterClass), which cannot be paced cluster by cluster.
func classRollout(changes []TemplateChange, users []ClassUser, patched, shared bool) *Rollout {
	if len(changes) == 0 {
		return nil
	}
	if patched {
		return &Rollout{Effect: EffectUnknown, Reason: "the ClusterClass has patches, which may change its templates per Cluster"}
	}
	r := &Rollout{Effect: EffectNone}
	var rolls, same, unknown []string
	for _, c := range changes {
		what := fmt.Sprintf("%s %s → %s", c.Field, c.Old, c.New)
		switch {
		case c.Missing:
			unknown = append(unknown, what+" (a template could not be read)")
			continue
		case equality.Semantic.DeepEqual(c.OldSpec, c.NewSpec):
			same = append(same, what)
			continue
		case c.Field == "spec.controlPlane.templateRef":
			unknown = append(unknown, what+" (patched into each KubeadmControlPlane, whose own rules decide)")
			continue
		}
		n, clusters := 0, 0
		for _, u := range users {
			if (c.Class == "" && u.Worker == "") || (c.Class != "" && u.Class == c.Class && u.Worker != "") {
				n += u.Machines
				clusters++
				if u.Machines > 0 && !slices.Contains(r.Clusters, u.Cluster) {
					r.Clusters = append(r.Clusters, u.Cluster)
				}
				if c.Class == "" {
					r.ControlPlaneMachines += u.Machines
				}
			}
		}
		r.Machines += n
		rolls = append(rolls, fmt.Sprintf("%s: the new template's spec differs, so Cluster API rotates the clone of %d Clusters and replaces their %d Machines", what, clusters, n))
	}
	sort.Strings(r.Clusters)
	var parts []string
	switch {
	case len(unknown) > 0:
		r.Effect = EffectUnknown
		parts = append(parts, strings.Join(unknown, "; "))
	case r.Machines > 0:
		r.Effect = EffectRoll
		if !shared {
			break
		}
		rolls = append(rolls, "the ClusterClass is one object for all its Clusters, so its change cannot be paced cluster by cluster; "+
			"the Cluster API way to pace it is a new ClusterClass, and each Cluster's classRef moved to it in turn")
	}
	parts = append(parts, rolls...)
	if len(same) > 0 {
		parts = append(parts, strings.Join(same, "; ")+": the same spec under a new name: Cluster API patches the clusters' clones in place, nothing rolls")
	}
	r.Reason = strings.Join(parts, "; ")
	return r
}
