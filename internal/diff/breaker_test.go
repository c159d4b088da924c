package diff

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// pool is n Machines of MachineDeployment fleet/md-0, owned by its MachineSet.
func pool(n int) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for i := range n {
		m := machine(fmt.Sprintf("m%d", i), fmt.Sprintf("aws:///a/i-%d", i), "Running", map[string]string{LabelDeploymentName: "md-0"})
		m.SetOwnerReferences([]metav1.OwnerReference{{Kind: "MachineSet", Name: "md-0-abc", APIVersion: "cluster.x-k8s.io/v1beta2"}})
		out = append(out, m)
	}
	return out
}

func missing(ms ...*unstructured.Unstructured) []Finding {
	var out []Finding
	for _, m := range ms {
		out = append(out, Finding{Layer: LayerCloud, Class: ClassInstanceMissing, Cluster: "prod", Object: RefOf(m)})
	}
	return out
}

func TestBreakerLikeAMachineHealthCheck(t *testing.T) {
	ms := pool(4)
	tests := []struct {
		name        string
		absent      []*unstructured.Unstructured
		breaker     *Breaker
		wantReplace int
		wantSuspect bool
	}{
		{"1 of 4 missing: replaced", ms[:1], nil, 1, false},
		{"2 of 4 missing: more than 1 and more than 30 %", ms[:2], nil, 0, true},
		{"3 of 4 missing", ms[:3], nil, 0, true},
		{"3 of 4 with a looser breaker", ms[:3], &Breaker{MaxCount: 3, MaxPercent: 80}, 1, false},
		{"breaker off", ms[:3], &Breaker{MaxCount: -1}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := PlanReplacements(missing(tt.absent...), ReplaceInput{Machines: ms, Breaker: tt.breaker, Policy: Policy{Mode: ModeCorrect}})
			if len(plan.Replacements) != tt.wantReplace {
				t.Errorf("%d replacements, want %d (%v)", len(plan.Replacements), tt.wantReplace, reasons(plan.Findings))
			}
			why, suspect := plan.Suspect["fleet/prod"]
			if suspect != tt.wantSuspect {
				t.Errorf("suspect %v (%q), want %v", suspect, why, tt.wantSuspect)
			}
			if suspect && !strings.Contains(why, fmt.Sprintf("%d of 4 Machines", len(tt.absent))) {
				t.Errorf("the reason does not give the numbers: %q", why)
			}
			for _, f := range plan.Findings {
				if tt.wantSuspect && (f.Action != ActionBlocked || f.Blocker != BlockerInventorySuspect || !strings.HasPrefix(f.Reason, "InventorySuspect")) {
					t.Errorf("%s: %s %q, want blocked as InventorySuspect", f.Object.Name, f.Action, f.Reason)
				}
			}
		})
	}
}

func TestReplacementGuards(t *testing.T) {
	ms := pool(8)
	skip := ms[0].DeepCopy()
	skip.SetAnnotations(map[string]string{AnnotationSkipRemediation: ""})
	paused := ms[0].DeepCopy()
	paused.SetAnnotations(map[string]string{AnnotationPaused: ""})
	tests := []struct {
		name    string
		m       *unstructured.Unstructured
		groups  map[Group]Replicas
		total   int
		want    Action
		blocker Blocker
		reason  string
	}{
		{"skip-remediation", skip, nil, 0, ActionBlocked, BlockerSkipRemediation, "skip-remediation"},
		{"paused Machine", paused, nil, 0, ActionBlocked, BlockerMachinePaused, "paused"},
		{"its pool still recovering from the last replacement", ms[0], map[Group]Replicas{{"MachineDeployment", "fleet", "md-0"}: {Desired: 8, Available: 7}}, 0, ActionBlocked, BlockerBudget, "budget"},
		{"its pool available again", ms[0], map[Group]Replicas{{"MachineDeployment", "fleet", "md-0"}: {Desired: 8, Available: 8}}, 0, ActionReplace, "", ""},
		{"the fleet's cap", ms[0], nil, -1, ActionBlocked, BlockerFleetBudget, "fleet budget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			machines := append([]*unstructured.Unstructured{tt.m}, ms[1:]...)
			in := ReplaceInput{Machines: machines, Groups: tt.groups, Policy: Policy{Mode: ModeCorrect}}
			if tt.total < 0 {
				// Another pool's replacement is in flight, and the fleet allows one at a time.
				other := machine("other", "aws:///a/i-x", "Running", map[string]string{LabelDeploymentName: "md-1"})
				other.SetAnnotations(map[string]string{AnnotationRemediateMachine: ""})
				in.Machines = append(in.Machines, other)
				in.TotalBudget = 1
			}
			plan := PlanReplacements(missing(tt.m), in)
			f := plan.Findings[0]
			if f.Action != tt.want || f.Blocker != tt.blocker || !strings.Contains(f.Reason, tt.reason) {
				t.Errorf("%s (%q) %q, want %s (%q) with %q", f.Action, f.Blocker, f.Reason, tt.want, tt.blocker, tt.reason)
			}
		})
	}
}
