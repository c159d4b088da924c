package diff

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/core/reconcilers/machinedeployment/mdutil"
)

// Effect is what a change does to a cluster's Machines, by Cluster API's rules.
type Effect string

// Effects of a change on Machines.
const (
	// EffectRoll: Cluster API replaces Machines (deletes them and creates new ones).
	EffectRoll Effect = "roll"
	// EffectInPlace: the change reaches the existing Machines without replacing any.
	EffectInPlace Effect = "in-place"
	// EffectScale: Machines are created or deleted, none replaced.
	EffectScale Effect = "scale"
	// EffectNone: the existing Machines stay as they are (later ones may differ).
	EffectNone Effect = "none"
	// EffectUnknown: what happens cannot be known from Git and the live objects.
	EffectUnknown Effect = "unknown"
)

// Rollout is what a change to one object does to Machines.
type Rollout struct {
	Effect Effect `json:"effect"`
	// Machines is how many Machines the change replaces (roll), changes in place (in-place), or
	// creates or deletes (scale).
	Machines int `json:"machines"`
	// ControlPlane: the Machines are a control plane's.
	ControlPlane bool `json:"controlPlane,omitempty"`
	// Clusters are the Clusters (namespace/name) whose Machines roll, for a change that reaches
	// several (a ClusterClass's), and ControlPlaneMachines how many of the Machines are
	// control-plane Machines.
	Clusters             []string `json:"clusters,omitempty"`
	ControlPlaneMachines int      `json:"controlPlaneMachines,omitempty"`
	// Deferred: the roll does not begin when the change is applied (a spec.rollout.after ahead, a
	// paused MachineDeployment), so pacing does not hold it.
	Deferred bool `json:"deferred,omitempty"`
	// Reason names the fields and Cluster API's rule.
	Reason string `json:"reason"`
}

// Replaces is how many Machines r replaces: its Machines when it rolls, else 0.
func (r *Rollout) Replaces() int {
	if r == nil || r.Effect != EffectRoll {
		return 0
	}
	return r.Machines
}

// MachineDeploymentRollout says what applying next (the MachineDeployment as it will be stored:
// the dry run of Git's object) over live (nil when it does not exist) does to its Machines,
// created at machines (their creation times; nil when not read), at now. The rollout rule is
// Cluster API's own (mdutil.MachineTemplateUpToDate): version, bootstrap, infrastructure
// reference, failure domain; then rollout.after; the fields Cluster API propagates in place; and
// replicas.
func MachineDeploymentRollout(live, next *unstructured.Unstructured, machines []time.Time, now time.Time) (*Rollout, error) {
	var cur, des clusterv1.MachineDeployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(next.Object, &des); err != nil {
		return nil, fmt.Errorf("reading MachineDeployment %s: %w", next.GetName(), err)
	}
	want := int(ptr.Deref(des.Spec.Replicas, 1))
	if live == nil {
		if want == 0 {
			return &Rollout{Effect: EffectNone, Reason: "created with 0 replicas"}, nil
		}
		return &Rollout{Effect: EffectScale, Machines: want, Reason: fmt.Sprintf("created: Cluster API creates %d Machines", want)}, nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &cur); err != nil {
		return nil, fmt.Errorf("reading MachineDeployment %s: %w", live.GetName(), err)
	}
	had := int(ptr.Deref(cur.Spec.Replicas, 1))
	have := len(machines)
	if machines == nil {
		// The Machines a roll replaces are those the MachineDeployment is meant to have: at the end
		// of an earlier rollout status.replicas still counts the old ones on their way out.
		have = min(int(ptr.Deref(cur.Status.Replicas, int32(had))), had)
	}

	var rolls []string
	later := true // every roll reason takes effect later (a rollout.after ahead)
	if upToDate, res := mdutil.MachineTemplateUpToDate(&cur.Spec.Template, &des.Spec.Template); !upToDate {
		rolls = append(rolls, strings.Join(res.LogMessages, ", ")+" (MachineTemplateUpToDate)")
		later = false
	}
	replaced := have
	if after := des.Spec.Rollout.After; !after.IsZero() && !after.Equal(&cur.Spec.Rollout.After) {
		switch {
		case after.Time.After(now):
			rolls = append(rolls, fmt.Sprintf("spec.rollout.after %s: the Machines created before it are replaced once it passes", after.UTC().Format(time.RFC3339)))
		case machines == nil:
			return &Rollout{Effect: EffectUnknown, Reason: fmt.Sprintf("spec.rollout.after %s has passed: the Machines created before it are replaced, and their ages were not read", after.UTC().Format(time.RFC3339))}, nil
		default:
			older := 0
			for _, c := range machines {
				if c.Before(after.Time) {
					older++
				}
			}
			if older > 0 {
				later = false
				rolls = append(rolls, fmt.Sprintf("spec.rollout.after %s has passed: the %d Machines created before it are replaced", after.UTC().Format(time.RFC3339), older))
				if len(rolls) == 1 {
					replaced = older
				}
			}
		}
	}
	if len(rolls) > 0 {
		reason := "Cluster API replaces the Machines: " + strings.Join(rolls, "; ") + alsoScales(had, want)
		switch {
		case des.Spec.Rollout.Strategy.Type == clusterv1.OnDeleteMachineDeploymentStrategyType:
			return &Rollout{Effect: EffectNone, Reason: reason + "; but its strategy is OnDelete: a Machine is replaced only when someone deletes it"}, nil
		case ptr.Deref(des.Spec.Paused, false):
			reason += "; deferred while the MachineDeployment is paused"
			later = true
		}
		return &Rollout{Effect: EffectRoll, Machines: replaced, Deferred: later, Reason: reason}, nil
	}
	if want != had {
		return scaled(had, want, "Machines", false), nil
	}
	if fields := inPlaceFields(&cur.Spec.Template, &des.Spec.Template); len(fields) > 0 {
		return &Rollout{Effect: EffectInPlace, Machines: have,
			Reason: "Cluster API propagates " + strings.Join(fields, ", ") + " to the existing Machines without replacing them"}, nil
	}
	return &Rollout{Effect: EffectNone, Reason: "no field Cluster API rolls out, scales or propagates to Machines"}, nil
}

// NeedsMachineAges reports whether MachineDeploymentRollout needs the ages of live's Machines to
// judge next: only when next sets spec.rollout.after anew to a time that has passed.
func NeedsMachineAges(live, next *unstructured.Unstructured, now time.Time) bool {
	after, _, _ := unstructured.NestedString(next.Object, "spec", "rollout", "after")
	before, _, _ := unstructured.NestedString(live.Object, "spec", "rollout", "after")
	t, err := time.Parse(time.RFC3339, after)
	return after != "" && after != before && err == nil && !t.After(now)
}

// inPlaceFields lists the fields of a Machine template Cluster API propagates to the existing
// Machines without a rollout (those mdutil.MachineTemplateDeepCopyRolloutFields leaves out of
// the comparison) that differ between cur and des.
func inPlaceFields(cur, des *clusterv1.MachineTemplateSpec) []string {
	return changed(
		field{"template.metadata.labels", cur.Labels, des.Labels},
		field{"template.metadata.annotations", cur.Annotations, des.Annotations},
		field{"template.spec.minReadySeconds", cur.Spec.MinReadySeconds, des.Spec.MinReadySeconds},
		field{"template.spec.readinessGates", cur.Spec.ReadinessGates, des.Spec.ReadinessGates},
		field{"template.spec.deletion.nodeDrainTimeoutSeconds", cur.Spec.Deletion.NodeDrainTimeoutSeconds, des.Spec.Deletion.NodeDrainTimeoutSeconds},
		field{"template.spec.deletion.nodeVolumeDetachTimeoutSeconds", cur.Spec.Deletion.NodeVolumeDetachTimeoutSeconds, des.Spec.Deletion.NodeVolumeDetachTimeoutSeconds},
		field{"template.spec.deletion.nodeDeletionTimeoutSeconds", cur.Spec.Deletion.NodeDeletionTimeoutSeconds, des.Spec.Deletion.NodeDeletionTimeoutSeconds},
		field{"template.spec.taints", cur.Spec.Taints, des.Spec.Taints},
	)
}

// field is a named field of two versions of an object.
type field struct {
	name     string
	cur, des any
}

// changed names the fields whose two versions differ.
func changed(fields ...field) []string {
	var out []string
	for _, f := range fields {
		if !equality.Semantic.DeepEqual(f.cur, f.des) {
			out = append(out, f.name)
		}
	}
	return out
}

// alsoScales is what a roll's reason adds when the replicas change too ("" when they do not).
func alsoScales(had, want int) string {
	if had == want {
		return ""
	}
	return fmt.Sprintf("; and scales: spec.replicas %d → %d", had, want)
}

// scaled is the rollout of a change of replicas from had to want (which differ): what of
// Machines (e.g. "control-plane Machines") are created or deleted, none replaced.
func scaled(had, want int, what string, controlPlane bool) *Rollout {
	verb, n := "creates", want-had
	if n < 0 {
		verb, n = "deletes", -n
	}
	return &Rollout{Effect: EffectScale, Machines: n, ControlPlane: controlPlane,
		Reason: fmt.Sprintf("spec.replicas %d → %d: Cluster API %s %d %s, replacing none", had, want, verb, n, what)}
}

// Rollouts totals what a revision's findings do to Machines.
type Rollouts struct {
	// Machines is how many Machines the revision replaces, ControlPlaneMachines how many of them
	// are control-plane Machines, Clusters in how many clusters.
	Machines             int `json:"machines"`
	ControlPlaneMachines int `json:"controlPlaneMachines"`
	Clusters             int `json:"clusters"`
	// Scaled pools, objects changed InPlace, and findings whose effect is Unknown.
	Scaled  int `json:"scaled"`
	InPlace int `json:"inPlace"`
	Unknown int `json:"unknown"`
}

// SumRollouts totals the rollouts of findings.
func SumRollouts(findings []Finding) Rollouts {
	var t Rollouts
	clusters := map[string]bool{}
	for _, f := range findings {
		r := f.Rollout
		if r == nil {
			continue
		}
		switch r.Effect {
		case EffectRoll:
			t.Machines += r.Machines
			t.ControlPlaneMachines += r.ControlPlaneMachines
			if r.ControlPlane {
				t.ControlPlaneMachines += r.Machines
			}
			for _, c := range r.Clusters {
				clusters[c] = true
			}
			if r.Machines > 0 && len(r.Clusters) == 0 {
				clusters[f.Object.Namespace+"/"+f.Cluster] = true
			}
		case EffectScale:
			t.Scaled++
		case EffectInPlace:
			t.InPlace++
		case EffectUnknown:
			t.Unknown++
		}
	}
	t.Clusters = len(clusters)
	return t
}

// String is the fleet summary line of t.
func (t Rollouts) String() string {
	s := fmt.Sprintf("This revision replaces %d Machines in %d clusters (%d control plane), scales %d pools, changes %d in place",
		t.Machines, t.Clusters, t.ControlPlaneMachines, t.Scaled, t.InPlace)
	if t.Unknown > 0 {
		s += fmt.Sprintf("; %d changes have an effect that cannot be known before they are applied", t.Unknown)
	}
	return s
}
