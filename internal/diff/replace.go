package diff

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// AnnotationRemediateMachine asks the MachineHealthCheck that selects a Machine to remediate it.
const AnnotationRemediateMachine = clusterv1.RemediateMachineAnnotation

// Labels Cluster API sets on Machines.
const (
	LabelDeploymentName   = clusterv1.MachineDeploymentNameLabel
	LabelControlPlaneName = clusterv1.MachineControlPlaneNameLabel
	LabelControlPlane     = clusterv1.MachineControlPlaneLabel
)

// ReplaceMethod is how a drifted Machine is replaced.
type ReplaceMethod string

const (
	// ReplaceRemediate annotates the Machine for the MachineHealthCheck that selects it, which
	// remediates it under its own limits.
	ReplaceRemediate ReplaceMethod = "remediate"
	// ReplaceDelete deletes a MachineSet-owned Machine; its MachineSet creates a fresh one.
	ReplaceDelete ReplaceMethod = "delete"
)

// Replacement is one Machine to replace.
type Replacement struct {
	Machine *unstructured.Unstructured
	Method  ReplaceMethod
}

// ReplaceInput is what replacement decisions look at.
type ReplaceInput struct {
	// Machines are all live Machines of the clusters in scope, to count replacements in flight.
	Machines []*unstructured.Unstructured
	// MHCs are the live MachineHealthChecks.
	MHCs []*unstructured.Unstructured
	// Paused are the paused clusters, as "namespace/name".
	Paused map[string]bool
	// Budget is how many replacements may be in flight per MachineDeployment, MachineSet or control
	// plane; below 1 means 1.
	Budget int
	Policy Policy
}

// DecideMachines sets the action of every Machine finding (InstanceMissing, InstanceStopped,
// InstanceMismatch) and returns the replacements to make now: never more than Budget in flight per
// group, never in a paused cluster, a control plane only through a MachineHealthCheck.
func DecideMachines(findings []Finding, in ReplaceInput) ([]Finding, []Replacement) {
	budget := max(in.Budget, 1)
	byKey := map[Key]*unstructured.Unstructured{}
	inFlight := map[string]int{}
	for _, m := range in.Machines {
		byKey[KeyOf(m)] = m
		if replacementInFlight(m) {
			inFlight[group(m)]++
		}
	}
	var out []Replacement
	for i := range findings {
		f := &findings[i]
		switch f.Class {
		case ClassInstanceMissing, ClassInstanceStopped, ClassInstanceMismatch:
		default:
			continue
		}
		m := byKey[keyOfRef(f.Object)]
		if m == nil {
			f.Action, f.Reason = ActionReport, "the Machine is gone"
			continue
		}
		f.Action, f.Reason = decideMachine(m, in, budget, inFlight)
		if f.Action != ActionReplace {
			continue
		}
		method := ReplaceDelete
		if mhc := selectingMHC(m, in.MHCs); mhc != "" {
			method = ReplaceRemediate
		}
		inFlight[group(m)]++
		out = append(out, Replacement{Machine: m, Method: method})
	}
	return findings, out
}

func decideMachine(m *unstructured.Unstructured, in ReplaceInput, budget int, inFlight map[string]int) (Action, string) {
	cluster, _, _ := unstructured.NestedString(m.Object, "spec", "clusterName")
	switch {
	case annotation(nil, m, AnnotationReconcile) == "disabled":
		return ActionIgnored, AnnotationReconcile + ": disabled"
	case replacementInFlight(m):
		return ActionReport, "replacement already in flight"
	case in.Policy.Mode == ModeDetect:
		return ActionReport, "detect mode"
	case annotation(nil, m, AnnotationMode) == string(ModeDetect):
		return ActionReport, AnnotationMode + ": detect"
	case in.Paused[m.GetNamespace()+"/"+cluster]:
		return ActionBlocked, fmt.Sprintf("cluster %s is paused", cluster)
	}
	mhc := selectingMHC(m, in.MHCs)
	_, controlPlane := m.GetLabels()[LabelControlPlane]
	switch {
	case mhc == "" && controlPlane:
		return ActionBlocked, "a control plane Machine is replaced only through a MachineHealthCheck, and none selects it"
	case mhc == "" && machineSetOwner(m) == "":
		return ActionBlocked, "no MachineHealthCheck selects it and no MachineSet owns it: nothing would create its replacement"
	}
	if g := group(m); inFlight[g] >= budget {
		return ActionBlocked, fmt.Sprintf("budget: %d replacement(s) already in flight for %s", inFlight[g], g)
	}
	if mhc != "" {
		return ActionReplace, "remediated by MachineHealthCheck " + mhc
	}
	return ActionReplace, "deleted; MachineSet " + machineSetOwner(m) + " creates a new Machine from its template"
}

// replacementInFlight reports whether a Machine is already being replaced.
func replacementInFlight(m *unstructured.Unstructured) bool {
	_, requested := m.GetAnnotations()[AnnotationRemediateMachine]
	return requested || m.GetDeletionTimestamp() != nil
}

// group is what a replacement budget counts against: the MachineDeployment, else the MachineSet,
// else the control plane, else the Machine itself.
func group(m *unstructured.Unstructured) string {
	l := m.GetLabels()
	switch {
	case l[LabelDeploymentName] != "":
		return "MachineDeployment " + m.GetNamespace() + "/" + l[LabelDeploymentName]
	case machineSetOwner(m) != "":
		return "MachineSet " + m.GetNamespace() + "/" + machineSetOwner(m)
	case l[LabelControlPlaneName] != "":
		return "control plane " + m.GetNamespace() + "/" + l[LabelControlPlaneName]
	}
	return "Machine " + m.GetNamespace() + "/" + m.GetName()
}

func machineSetOwner(m *unstructured.Unstructured) string {
	for _, o := range m.GetOwnerReferences() {
		if o.Kind == "MachineSet" {
			return o.Name
		}
	}
	return ""
}

// selectingMHC returns the name of a MachineHealthCheck of the Machine's cluster whose selector
// matches the Machine, or "".
func selectingMHC(m *unstructured.Unstructured, mhcs []*unstructured.Unstructured) string {
	cluster, _, _ := unstructured.NestedString(m.Object, "spec", "clusterName")
	for _, mhc := range mhcs {
		mc, _, _ := unstructured.NestedString(mhc.Object, "spec", "clusterName")
		if mhc.GetNamespace() != m.GetNamespace() || mc != cluster {
			continue
		}
		raw, ok, _ := unstructured.NestedMap(mhc.Object, "spec", "selector")
		if !ok {
			continue
		}
		var ls metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil || sel.Empty() {
			continue // an empty selector selects nothing in Cluster API
		}
		if sel.Matches(labels.Set(m.GetLabels())) {
			return mhc.GetName()
		}
	}
	return ""
}

func keyOfRef(r ObjectRef) Key {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(r.APIVersion)
	u.SetKind(r.Kind)
	return Key{Group: KeyOf(u).Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
}
