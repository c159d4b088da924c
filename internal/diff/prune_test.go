package diff

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func orphan(kind, name, cluster string, annotations map[string]string) Orphan {
	o := &unstructured.Unstructured{}
	group := "infrastructure.cluster.x-k8s.io/v1beta2"
	if kind == "Cluster" || kind == "MachineDeployment" {
		group = "cluster.x-k8s.io/v1beta2"
	}
	o.SetAPIVersion(group)
	o.SetKind(kind)
	o.SetNamespace("fleet")
	o.SetName(name)
	o.SetAnnotations(annotations)
	return Orphan{Object: o, Cluster: cluster}
}

func actions(plan PrunePlan) map[string]Action {
	out := map[string]Action{}
	for _, f := range plan.Findings {
		out[f.Object.Kind+"/"+f.Object.Name] = f.Action
	}
	return out
}

func TestDecidePrune(t *testing.T) {
	prune := Policy{Mode: ModeCorrect, Prune: true}
	tests := []struct {
		name     string
		in       PruneInput
		want     map[string]Action
		blocker  Blocker // of every blocked finding
		wantHeld int
	}{
		{
			name: "pruning off reports",
			in:   PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "old", "", nil)}, Tracked: 50, Policy: Policy{Mode: ModeCorrect}},
			want: map[string]Action{"AWSMachineTemplate/old": ActionReport},
		},
		{
			name: "a renamed template of a cluster still in Git is deleted",
			in: PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "md-0-v1", "prod", nil)}, Tracked: 50, Policy: prune,
				Clusters: map[string]ClusterState{"fleet/prod": {Live: true, InGit: true}}},
			want: map[string]Action{"AWSMachineTemplate/md-0-v1": ActionDelete},
		},
		{
			name: "a template an older MachineSet still uses waits; an unused one goes",
			in: PruneInput{Orphans: []Orphan{
				func() Orphan {
					o := orphan("AWSMachineTemplate", "md-0-v1", "prod", nil)
					o.InUseBy = "MachineSet fleet/prod-md-0-7d9f"
					return o
				}(),
				orphan("AWSMachineTemplate", "md-0-v0", "prod", nil),
			}, Tracked: 50, Policy: prune, Clusters: map[string]ClusterState{"fleet/prod": {Live: true, InGit: true}}},
			want: map[string]Action{"AWSMachineTemplate/md-0-v1": ActionReport, "AWSMachineTemplate/md-0-v0": ActionDelete},
		},
		{
			name: "a whole Cluster leaving Git: only the Cluster goes, with its opt-in",
			in: PruneInput{Orphans: []Orphan{
				orphan("Cluster", "edge", "edge", map[string]string{AnnotationPrune: "enabled"}),
				orphan("AWSCluster", "edge", "edge", nil),
				orphan("MachineDeployment", "edge-md-0", "edge", nil),
				orphan("AWSMachineTemplate", "edge-md-0", "edge", nil),
			}, Tracked: 50, Policy: prune, Clusters: map[string]ClusterState{"fleet/edge": {Live: true}}},
			want: map[string]Action{"Cluster/edge": ActionDelete, "AWSCluster/edge": ActionReport,
				"MachineDeployment/edge-md-0": ActionReport, "AWSMachineTemplate/edge-md-0": ActionReport},
		},
		{
			name: "a Cluster without the opt-in is reported",
			in: PruneInput{Orphans: []Orphan{orphan("Cluster", "edge", "edge", nil)}, Tracked: 50, Policy: prune,
				Clusters: map[string]ClusterState{"fleet/edge": {Live: true}}},
			want: map[string]Action{"Cluster/edge": ActionReport},
		},
		{
			name: "nothing of a paused cluster is pruned",
			in: PruneInput{Orphans: []Orphan{
				orphan("Cluster", "edge", "edge", map[string]string{AnnotationPrune: "enabled", AnnotationPaused: ""}),
				orphan("AWSMachineTemplate", "prod-old", "prod", nil),
			}, Tracked: 50, Policy: prune, Clusters: map[string]ClusterState{"fleet/prod": {Live: true, InGit: true, Paused: true}}},
			want:    map[string]Action{"Cluster/edge": ActionBlocked, "AWSMachineTemplate/prod-old": ActionBlocked},
			blocker: BlockerClusterPaused,
		},
		{
			name: "nothing of a deleting cluster is touched",
			in: PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "prod-old", "prod", nil)}, Tracked: 50, Policy: prune,
				Clusters: map[string]ClusterState{"fleet/prod": {Live: true, InGit: true, Deleting: true}}},
			want: map[string]Action{"AWSMachineTemplate/prod-old": ActionReport},
		},
		{
			name: "more than the limit: every deletion held back",
			in: PruneInput{Orphans: []Orphan{
				orphan("AWSMachineTemplate", "a", "", nil), orphan("AWSMachineTemplate", "b", "", nil),
				orphan("AWSMachineTemplate", "c", "", nil), orphan("AWSMachineTemplate", "d", "", nil),
				orphan("AWSMachineTemplate", "e", "", nil), orphan("AWSMachineTemplate", "f", "", nil),
			}, Tracked: 1000, Policy: prune},
			want: map[string]Action{"AWSMachineTemplate/a": ActionBlocked, "AWSMachineTemplate/b": ActionBlocked,
				"AWSMachineTemplate/c": ActionBlocked, "AWSMachineTemplate/d": ActionBlocked,
				"AWSMachineTemplate/e": ActionBlocked, "AWSMachineTemplate/f": ActionBlocked},
			wantHeld: 6,
			blocker:  BlockerPruneLimit,
		},
		{
			name: "more than 10 % of what driftd tracks",
			in: PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "a", "", nil), orphan("AWSMachineTemplate", "b", "", nil)},
				Tracked: 12, Policy: prune},
			want:     map[string]Action{"AWSMachineTemplate/a": ActionBlocked, "AWSMachineTemplate/b": ActionBlocked},
			wantHeld: 2,
			blocker:  BlockerPruneLimit,
		},
		{
			name: "one deletion is never held back by the share alone",
			in:   PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "a", "", nil)}, Tracked: 4, Policy: prune},
			want: map[string]Action{"AWSMachineTemplate/a": ActionDelete},
		},
		{
			name: "a raised limit lets them go",
			in: PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "a", "", nil), orphan("AWSMachineTemplate", "b", "", nil)},
				Tracked: 12, Policy: prune, Limit: &PruneLimit{Max: 10, Percent: 50}},
			want: map[string]Action{"AWSMachineTemplate/a": ActionDelete, "AWSMachineTemplate/b": ActionDelete},
		},
		{
			name: "detect mode and source trouble only report",
			in: PruneInput{Orphans: []Orphan{orphan("AWSMachineTemplate", "a", "", nil)}, Tracked: 50,
				Policy: prune, Degraded: "the source cannot be fetched"},
			want: map[string]Action{"AWSMachineTemplate/a": ActionReport},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := DecidePrune(tt.in)
			if d := cmp.Diff(tt.want, actions(plan)); d != "" {
				t.Errorf("actions (-want +got):\n%s", d)
			}
			for _, f := range plan.Findings {
				if f.Action == ActionBlocked && f.Blocker != tt.blocker {
					t.Errorf("%s blocked by %q, want %q", f.Object, f.Blocker, tt.blocker)
				}
			}
			if plan.Held != tt.wantHeld {
				t.Errorf("held %d, want %d (%s)", plan.Held, tt.wantHeld, plan.HeldReason)
			}
		})
	}
}

func TestDecidePruneLeavesAnOrphanBeingDeletedAlone(t *testing.T) {
	o := orphan("AWSMachineTemplate", "a", "", nil)
	now := metav1.Now()
	o.Object.SetDeletionTimestamp(&now)
	plan := DecidePrune(PruneInput{Orphans: []Orphan{o}, Tracked: 50, Policy: Policy{Mode: ModeCorrect, Prune: true}})
	if got := plan.Findings[0].Action; got != ActionReport {
		t.Errorf("action %s for an orphan already being deleted, want report", got)
	}
}

func TestTrackedOnlyWhenTheIDNamesTheObjectItself(t *testing.T) {
	tmpl := obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "AWSMachineTemplate",
		"metadata": map[string]any{"name": "class-workers", "namespace": "fleet"}})
	Track(tmpl, "driftd")
	if !Tracked(tmpl, "driftd") {
		t.Fatal("an object driftd applied is not tracked")
	}
	if Tracked(tmpl, "other-shard") {
		t.Error("tracked for another owner")
	}
	// Cluster API's topology controller clones the template with its labels and annotations.
	clone := tmpl.DeepCopy()
	clone.SetName("prod-workers-x7k2p")
	if clone.GetLabels()[OwnerLabel] != "driftd" {
		t.Fatal("fixture: the clone lost the owner label")
	}
	if Tracked(clone, "driftd") {
		t.Error("a controller's clone carrying driftd's label and the original's id counts as driftd's own")
	}
	untracked := tmpl.DeepCopy()
	untracked.SetAnnotations(nil)
	if Tracked(untracked, "driftd") {
		t.Error("an object with the label and no id counts as driftd's own")
	}
}

func TestDecidePruneNeverDeletesANamespace(t *testing.T) {
	o := orphan("Namespace", "fleet", "", nil)
	o.Object.SetAPIVersion("v1")
	o.Object.SetNamespace("")
	plan := DecidePrune(PruneInput{Orphans: []Orphan{o}, Tracked: 50, Policy: Policy{Mode: ModeCorrect, Prune: true}})
	if got := plan.Findings[0].Action; got != ActionReport {
		t.Errorf("action %s for an orphaned Namespace, want report: deleting it deletes everything in it", got)
	}
}

func TestSpecReferences(t *testing.T) {
	ms := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineSet",
		"metadata": map[string]any{"name": "md-0-7d9f", "namespace": "fleet"},
		"spec": map[string]any{"clusterName": "prod", "template": map[string]any{"spec": map[string]any{
			"bootstrap":         map[string]any{"configRef": map[string]any{"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfigTemplate", "name": "md-0"}},
			"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "DevMachineTemplate", "name": "md-0-v1"},
		}}},
	}}
	cluster := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
		"metadata": map[string]any{"name": "prod", "namespace": "fleet"},
		"spec": map[string]any{
			"infrastructureRef": map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "AWSCluster", "name": "prod"},
			"topology":          map[string]any{"class": "quick-start", "classNamespace": "classes"},
		},
	}}
	cc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "ClusterClass",
		"metadata": map[string]any{"name": "quick-start", "namespace": "classes"},
		"spec": map[string]any{"workers": map[string]any{"machineDeployments": []any{map[string]any{
			"class": "default-worker", "infrastructure": map[string]any{"templateRef": map[string]any{
				"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "DevMachineTemplate", "name": "worker"}},
		}}}},
	}}
	got := map[string][]Key{"ms": SpecReferences(ms), "cluster": SpecReferences(cluster), "cc": SpecReferences(cc)}
	for _, refs := range got {
		sortKeys(refs)
	}
	want := map[string][]Key{
		"ms": {{Group: "infrastructure.cluster.x-k8s.io", Kind: "DevMachineTemplate", Namespace: "fleet", Name: "md-0-v1"},
			{Group: "bootstrap.cluster.x-k8s.io", Kind: "KubeadmConfigTemplate", Namespace: "fleet", Name: "md-0"}},
		"cluster": {{Group: "infrastructure.cluster.x-k8s.io", Kind: "AWSCluster", Namespace: "fleet", Name: "prod"},
			{Group: "cluster.x-k8s.io", Kind: "ClusterClass", Namespace: "classes", Name: "quick-start"}},
		"cc": {{Group: "infrastructure.cluster.x-k8s.io", Kind: "DevMachineTemplate", Namespace: "classes", Name: "worker"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SpecReferences (-want +got):\n%s", diff)
	}
}

func sortKeys(keys []Key) {
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
}
