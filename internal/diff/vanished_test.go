package diff

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/infra"
)

// TestVanished: a location that answers with none of a cluster's instances it held at the last
// look, while the cluster's Machines remain, is suspect until it answers with them again. An
// instance listed as terminated is an answer about that instance — the location did not empty
// itself — so a cluster whose only instance was terminated is judged (and its Machine replaced),
// not held back for ever.
func TestVanished(t *testing.T) {
	look := []Look{{Provider: infra.ProviderAWS, Cluster: "fleet/prod", Locations: []string{"eu-west-1"}}}
	key := infra.ProviderAWS + "/fleet/prod@eu-west-1"
	machines := []*unstructured.Unstructured{machine("m1", "aws:///eu-west-1a/i-1", "Running", nil)}
	inst := func(state string) []infra.Instance {
		return []infra.Instance{{Provider: infra.ProviderAWS, ID: "i-1", Cluster: "fleet/prod", Region: "eu-west-1", State: state}}
	}
	tests := []struct {
		name        string
		prev        int
		instances   []infra.Instance
		wantSuspect bool
		wantNext    int
	}{
		{"held one, answers with it", 1, inst(infra.StateRunning), false, 1},
		{"held one, answers with it terminated", 1, inst(infra.StateTerminated), false, 1},
		{"held one, answers with none", 1, nil, true, 1},
		{"held none, answers with none", 0, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			suspect, next := Vanished(map[string]int{key: tt.prev}, look, &infra.Snapshot{Complete: true, Instances: tt.instances}, machines)
			if _, got := suspect["fleet/prod"]; got != tt.wantSuspect {
				t.Errorf("suspect %v (%v), want %v", got, suspect, tt.wantSuspect)
			}
			if next[key] != tt.wantNext {
				t.Errorf("remembered %d, want %d", next[key], tt.wantNext)
			}
		})
	}
}
