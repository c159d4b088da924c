package diff

import (
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// AnnotationRemediateMachine asks the MachineHealthCheck that selects a Machine to remediate it.
const AnnotationRemediateMachine = clusterv1.RemediateMachineAnnotation

// AnnotationSkipRemediation on a Machine keeps it from being remediated, by Cluster API or driftd.
const AnnotationSkipRemediation = clusterv1.MachineSkipRemediationAnnotation

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

// Group is what a replacement budget counts against: a MachineDeployment, else a MachineSet,
// else a control plane, else the Machine itself.
type Group struct {
	Kind, Namespace, Name string
}

func (g Group) String() string { return g.Kind + " " + g.Namespace + "/" + g.Name }

// GroupOf returns the group of a Machine.
func GroupOf(m *unstructured.Unstructured) Group {
	l := m.GetLabels()
	switch {
	case l[LabelDeploymentName] != "":
		return Group{"MachineDeployment", m.GetNamespace(), l[LabelDeploymentName]}
	case machineSetOwner(m) != "":
		return Group{"MachineSet", m.GetNamespace(), machineSetOwner(m)}
	case l[LabelControlPlaneName] != "":
		return Group{"KubeadmControlPlane", m.GetNamespace(), l[LabelControlPlaneName]}
	}
	return Group{"Machine", m.GetNamespace(), m.GetName()}
}

// Replicas are a group's desired and available replicas, from its status.
type Replicas struct {
	Desired, Available int64
}

// Breaker stops replacements when too many of a cluster's or a pool's Machines look missing or
// stopped at once, as a MachineHealthCheck stops remediating (unhealthyLessThanOrEqualTo): more
// than MaxCount and more than MaxPercent of them. A wrong cloud answer (an empty one, a credential
// that sees another account) looks exactly like that.
type Breaker struct {
	// MaxCount and MaxPercent: the breaker trips above both; a negative MaxCount turns it off.
	MaxCount, MaxPercent int
}

// DefaultBreaker trips when more than 1 and more than 30 % of the Machines look missing or stopped.
var DefaultBreaker = Breaker{MaxCount: 1, MaxPercent: 30}

// ReplaceInput is what replacement decisions look at.
type ReplaceInput struct {
	// Machines are all live Machines of the clusters in scope, to count replacements in flight.
	Machines []*unstructured.Unstructured
	// MHCs are the live MachineHealthChecks.
	MHCs []*unstructured.Unstructured
	// Groups are the desired and available replicas of each group, by Group: a group with fewer
	// available than desired is still recovering from a replacement.
	Groups map[Group]Replicas
	// Paused are the paused clusters, by key ("namespace/name").
	Paused map[string]bool
	// Suspect are clusters (by key) whose inventory the caller already distrusts, with why (a
	// region or vCenter that held its instances answered with none).
	Suspect map[string]string
	// Budget is how many replacements may be in flight per group; below 1 means 1.
	Budget int
	// TotalBudget caps the replacements in flight across the fleet; 0 means no cap.
	TotalBudget int
	// Breaker is the breaker; nil is DefaultBreaker.
	Breaker *Breaker
	Policy  Policy
	// Degraded says why corrections are off (the source or the render failed), or "".
	Degraded string
	// Restorable are the providers whose inventory can restore a node pool's sizes; Writes says
	// driftd may (--cloud-writes).
	Restorable map[string]bool
	Writes     bool
}

// ReplacePlan is what PlanReplacements decided.
type ReplacePlan struct {
	// Findings are the findings with their actions.
	Findings []Finding
	// Replacements are the Machines to replace now.
	Replacements []Replacement
	// Suspect are the clusters (by key) whose inventory is distrusted, with the numbers, to
	// announce (InventorySuspect).
	Suspect map[string]string
}

// PlanReplacements sets the action of every cloud finding and returns the replacements to make
// now. For a node pool: whether its sizes are restored (DecidePool). For a Machine
// (InstanceMissing, InstanceStopped, InstanceMismatch): none in a cluster or pool whose
// inventory looks wrong (Breaker, Suspect), never more than Budget in flight per group — counting
// a replacement until its group has its replicas available again — nor TotalBudget across the
// fleet, never in a paused cluster, of a paused Machine or one with skip-remediation, and a control
// plane Machine only through a MachineHealthCheck.
func PlanReplacements(findings []Finding, in ReplaceInput) ReplacePlan {
	budget := max(in.Budget, 1)
	byKey := map[Key]*unstructured.Unstructured{}
	requested := map[Group]int{}
	total := 0
	for _, m := range in.Machines {
		byKey[KeyOf(m)] = m
		if replacementInFlight(m) {
			requested[GroupOf(m)]++
			total++
		}
	}
	inFlight := map[Group]int{}
	for g, n := range requested {
		inFlight[g] = n
	}
	for g, r := range in.Groups {
		// A replacement is in flight until its group has its replicas available again, as a
		// rollout's maxUnavailable counts: the old Machine may be gone while its successor still
		// provisions.
		if deficit := int(r.Desired - r.Available); deficit > inFlight[g] {
			inFlight[g] = deficit
		}
	}
	plan := ReplacePlan{Findings: findings, Suspect: map[string]string{}}
	for k, why := range in.Suspect {
		plan.Suspect[k] = why
	}
	suspectPools := breaker(findings, byKey, in, plan.Suspect)

	for i := range plan.Findings {
		f := &plan.Findings[i]
		switch f.Class {
		case ClassInstanceMissing, ClassInstanceStopped, ClassInstanceMismatch:
		default:
			continue
		}
		m := byKey[keyOfRef(f.Object)]
		if m == nil {
			f.Decided(reported("the Machine is gone"))
			continue
		}
		f.Decided(decideMachine(m, in))
		if f.Action != ActionReplace {
			continue
		}
		if in.Degraded != "" {
			f.Decided(reported("no corrections while " + in.Degraded))
			continue
		}
		if f.Class != ClassInstanceMismatch {
			if why, ok := plan.Suspect[clusterOf(m)]; ok {
				f.Decided(blocked(BlockerInventorySuspect, "InventorySuspect: "+why))
				continue
			}
			if why, ok := suspectPools[GroupOf(m)]; ok {
				f.Decided(blocked(BlockerInventorySuspect, "InventorySuspect: "+why))
				continue
			}
		}
		g := GroupOf(m)
		if inFlight[g] >= budget {
			f.Decided(blocked(BlockerBudget, fmt.Sprintf("budget: %d replacement(s) in flight for %s (its replicas are not all available again)", inFlight[g], g)))
			continue
		}
		if in.TotalBudget > 0 && total >= in.TotalBudget {
			f.Decided(blocked(BlockerFleetBudget, fmt.Sprintf("fleet budget: %d replacement(s) in flight across the fleet (--max-replacements-total %d)", total, in.TotalBudget)))
			continue
		}
		method := ReplaceDelete
		if mhc := selectingMHC(m, in.MHCs); mhc != "" {
			method = ReplaceRemediate
		}
		inFlight[g]++
		total++
		plan.Replacements = append(plan.Replacements, Replacement{Machine: m, Method: method})
	}
	for i := range plan.Findings {
		f := &plan.Findings[i]
		if f.Class == ClassNodePoolMismatch && f.Pool != nil {
			f.Decided(DecidePool(f.Pool.Provider, f.Cluster, in.Paused[ClusterKey(f.Object.Namespace, f.Cluster)], in))
		}
		if in.Degraded != "" && f.Action.Corrects() {
			f.Decided(reported("no corrections while " + in.Degraded))
		}
	}
	return plan
}

// DecidePool decides whether a node pool of provider, whose cluster may be paused, gets its sizes
// restored: only in correct mode, by an inventory that can restore them, with --cloud-writes, and
// never in a paused cluster.
func DecidePool(provider, cluster string, paused bool, in ReplaceInput) Decision {
	switch {
	case in.Policy.Mode == ModeDetect:
		return reported("detect mode")
	case !in.Restorable[provider]:
		return reported(fmt.Sprintf("the %s inventory cannot restore node pools", provider))
	case !in.Writes:
		return reported("cloud writes are off (--cloud-writes restores the group)")
	case paused:
		return blocked(BlockerClusterPaused, fmt.Sprintf("cluster %s is paused", cluster))
	}
	return corrected(ActionApply, "UpdateAutoScalingGroup restores the group's sizes")
}

// breaker finds the clusters and pools with too many Machines that look missing or stopped at once,
// adds the clusters to suspect and returns the pools.
func breaker(findings []Finding, byKey map[Key]*unstructured.Unstructured, in ReplaceInput, suspect map[string]string) map[Group]string {
	b := DefaultBreaker
	if in.Breaker != nil {
		b = *in.Breaker
	}
	if b.MaxCount < 0 {
		return nil
	}
	machines := map[string]int{}
	poolMachines := map[Group]int{}
	for _, m := range in.Machines {
		if m.GetDeletionTimestamp() == nil {
			machines[clusterOf(m)]++
			poolMachines[GroupOf(m)]++
		}
	}
	absent := map[string]int{}
	poolAbsent := map[Group]int{}
	for _, f := range findings {
		if f.Class != ClassInstanceMissing && f.Class != ClassInstanceStopped {
			continue
		}
		// A Machine already being replaced was judged before: the breaker weighs what this answer
		// newly claims.
		if m := byKey[keyOfRef(f.Object)]; m != nil && !replacementInFlight(m) {
			absent[clusterOf(m)]++
			poolAbsent[GroupOf(m)]++
		}
	}
	trips := func(n, of int) bool {
		return n > b.MaxCount && of > 0 && 100*float64(n)/float64(of) > float64(b.MaxPercent)
	}
	why := func(n, of int, what string) string {
		return fmt.Sprintf("%d of %d Machines of %s look missing or stopped at once (more than %d and more than %d%%); driftd replaces none of them until the inventory looks sane",
			n, of, what, b.MaxCount, b.MaxPercent)
	}
	clusters := make([]string, 0, len(absent))
	for c := range absent {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	for _, c := range clusters {
		if trips(absent[c], machines[c]) {
			if _, already := suspect[c]; !already {
				suspect[c] = why(absent[c], machines[c], "cluster "+c)
			}
		}
	}
	pools := map[Group]string{}
	for g, n := range poolAbsent {
		if trips(n, poolMachines[g]) {
			pools[g] = why(n, poolMachines[g], g.String())
		}
	}
	return pools
}

func decideMachine(m *unstructured.Unstructured, in ReplaceInput) Decision {
	cluster, _, _ := unstructured.NestedString(m.Object, "spec", "clusterName")
	_, skip := m.GetAnnotations()[AnnotationSkipRemediation]
	_, paused := m.GetAnnotations()[AnnotationPaused]
	switch {
	case annotation(nil, m, AnnotationReconcile) == "disabled":
		return Decision{Action: ActionIgnored, Reason: AnnotationReconcile + ": disabled"}
	case replacementInFlight(m):
		return reported("replacement already in flight")
	case in.Policy.Mode == ModeDetect:
		return reported("detect mode")
	case annotation(nil, m, AnnotationMode) == string(ModeDetect):
		return reported(AnnotationMode + ": detect")
	case in.Paused[clusterOf(m)]:
		return blocked(BlockerClusterPaused, fmt.Sprintf("cluster %s is paused", cluster))
	case paused:
		return blocked(BlockerMachinePaused, "the Machine is paused ("+AnnotationPaused+")")
	case skip:
		return blocked(BlockerSkipRemediation, "the Machine has "+AnnotationSkipRemediation)
	}
	mhc := selectingMHC(m, in.MHCs)
	_, controlPlane := m.GetLabels()[LabelControlPlane]
	switch {
	case mhc == "" && controlPlane:
		return blocked(BlockerNoReplacer, "a control plane Machine is replaced only through a MachineHealthCheck, and none selects it")
	case mhc == "" && machineSetOwner(m) == "":
		return blocked(BlockerNoReplacer, "no MachineHealthCheck selects it and no MachineSet owns it: nothing would create its replacement")
	}
	if mhc != "" {
		return corrected(ActionReplace, "remediated by MachineHealthCheck "+mhc)
	}
	return corrected(ActionReplace, "deleted; MachineSet "+machineSetOwner(m)+" creates a new Machine from its template")
}

// replacementInFlight reports whether a Machine is already being replaced.
func replacementInFlight(m *unstructured.Unstructured) bool {
	_, requested := m.GetAnnotations()[AnnotationRemediateMachine]
	return requested || m.GetDeletionTimestamp() != nil
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
