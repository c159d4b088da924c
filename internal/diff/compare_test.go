package diff

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(m map[string]any) *unstructured.Unstructured { return &unstructured.Unstructured{Object: m} }

func mdObject(replicas int64, labels map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
		"metadata": map[string]any{"name": "md", "namespace": "fleet", "labels": labels, "resourceVersion": "1"},
		"spec": map[string]any{
			"clusterName": "prod", "replicas": replicas,
			"template": map[string]any{"spec": map[string]any{
				"taints": []any{map[string]any{"key": "a", "effect": "NoSchedule"}},
			}},
		},
		"status": map[string]any{"replicas": int64(1)},
	}
}

func TestCompareReportsEveryDifferingFieldWithItsManager(t *testing.T) {
	when := metav1.NewTime(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	stored := obj(mdObject(3, map[string]any{"team": "a"}))
	live := obj(mdObject(7, map[string]any{"team": "b", OwnerLabel: "driftd"}))
	live.Object["status"] = map[string]any{"replicas": int64(7)}
	unstructured.SetNestedSlice(live.Object, []any{}, "spec", "template", "spec", "taints")
	live.SetResourceVersion("99")
	live.SetManagedFields([]metav1.ManagedFieldsEntry{
		{Manager: "driftd", Operation: metav1.ManagedFieldsOperationApply, Time: &when, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:team":{}}},"f:spec":{"f:clusterName":{}}}`)}},
		{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate, Time: &when, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:taints":{}}}}}`)}},
	})

	got := Compare(stored, live, nil, (*Rules)(nil).MaskedPaths(live))
	want := []Field{
		{Path: "/metadata/labels/team", Desired: "a", Live: "b", Manager: "driftd", Operation: "Apply", Time: &when.Time},
		{Path: "/spec/replicas", Desired: int64(3), Live: int64(7), Manager: "kubectl-edit", Operation: "Update", Time: &when.Time},
		{Path: "/spec/template/spec/taints", Desired: []any{map[string]any{"key": "a", "effect": "NoSchedule"}}, Live: []any{},
			Manager: "kubectl-edit", Operation: "Update", Time: &when.Time},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}

	t.Run("ignored paths are left out", func(t *testing.T) {
		got := Compare(stored, live, []string{"/spec/replicas", "/spec/template"}, nil)
		if len(got) != 1 || got[0].Path != "/metadata/labels/team" {
			t.Errorf("fields with /spec/replicas and /spec/template ignored = %+v", got)
		}
	})
	t.Run("no drift", func(t *testing.T) {
		same := stored.DeepCopy()
		same.SetResourceVersion("42")
		if got := Compare(stored, same, nil, nil); got != nil {
			t.Errorf("identical objects differ in %+v", got)
		}
	})
}

func TestCompareListItemsOwnedByKey(t *testing.T) {
	stored := obj(map[string]any{"spec": map[string]any{"containers": []any{
		map[string]any{"name": "a", "image": "a:1"}, map[string]any{"name": "b", "image": "b:1"},
	}}})
	live := stored.DeepCopy()
	unstructured.SetNestedSlice(live.Object, []any{
		map[string]any{"name": "a", "image": "a:1"}, map[string]any{"name": "b", "image": "b:2"},
	}, "spec", "containers")
	live.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl-set", Operation: "Update", FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:containers":{"k:{\"name\":\"b\"}":{"f:image":{}}}}}`)}}})
	got := Compare(stored, live, nil, (*Rules)(nil).MaskedPaths(live))
	if len(got) != 1 || got[0].Path != "/spec/containers/1/image" || got[0].Manager != "kubectl-set" {
		t.Errorf("fields = %+v, want /spec/containers/1/image by kubectl-set", got)
	}
}

func TestCompareMasksSecretValues(t *testing.T) {
	stored := obj(map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "creds"}, "data": map[string]any{"password": "c2VjcmV0", "user": "YWRtaW4="}})
	live := stored.DeepCopy()
	live.Object["data"] = map[string]any{"password": "bGVha2Vk", "user": "YWRtaW4="}
	got := Compare(stored, live, nil, (*Rules)(nil).MaskedPaths(live))
	want := []Field{{Path: "/data/password", Desired: Masked, Live: Masked}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	delete(live.Object, "data")
	got = Compare(stored, live, nil, (*Rules)(nil).MaskedPaths(live))
	want = []Field{{Path: "/data/password", Desired: Masked}, {Path: "/data/user", Desired: Masked}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields with live data absent (-want +got):\n%s", diff)
	}
}

func TestPointerEscaping(t *testing.T) {
	stored := obj(map[string]any{"metadata": map[string]any{"annotations": map[string]any{"a/b~c": "1"}}})
	live := obj(map[string]any{"metadata": map[string]any{"annotations": map[string]any{"a/b~c": "2"}}})
	got := Compare(stored, live, nil, (*Rules)(nil).MaskedPaths(live))
	if len(got) != 1 || got[0].Path != "/metadata/annotations/a~1b~0c" {
		t.Fatalf("fields = %+v, want the RFC 6901 pointer /metadata/annotations/a~1b~0c", got)
	}
	if toks := splitPointer(got[0].Path); toks[2] != "a/b~c" {
		t.Errorf("splitPointer round trip = %q", toks)
	}
}

func TestCompareSetComparesOnlyWhatGitSets(t *testing.T) {
	desired := obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "AWSMachineTemplate",
		"metadata": map[string]any{"name": "t", "namespace": "fleet"},
		"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"instanceType": "m6i.2xlarge"}}}})
	live := obj(map[string]any{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "AWSMachineTemplate",
		"metadata": map[string]any{"name": "t", "namespace": "fleet", "uid": "u1"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"instanceType": "m6i.large", "cloudInit": map[string]any{"insecureSkipSecretsManager": false}}}}})
	got := CompareSet(desired, live, nil, nil)
	want := []Field{{Path: "/spec/template/spec/instanceType", Desired: "m6i.2xlarge", Live: "m6i.large"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("fields (-want +got):\n%s", d)
	}
}

func TestDecideInSituation(t *testing.T) {
	md := obj(mdObject(3, nil))
	correct := Policy{Mode: ModeCorrect}
	rejected := "the API server rejects it: spec.template is immutable"
	tests := []struct {
		name    string
		class   Class
		sit     Situation
		p       Policy
		want    Action
		blocker Blocker
		reason  []string
	}{
		{"modified", ClassModified, Situation{Cluster: "prod"}, correct, ActionApply, "", nil},
		{"missing", ClassMissing, Situation{Cluster: "prod"}, correct, ActionCreate, "", nil},
		{"cluster being deleted", ClassMissing, Situation{Cluster: "prod", Deleting: true}, correct, ActionReport, "", []string{"cluster prod is being deleted"}},
		{"paused", ClassModified, Situation{Cluster: "prod", Paused: true}, correct, ActionBlocked, BlockerClusterPaused, []string{"cluster prod is paused"}},
		{"held", ClassModified, Situation{Cluster: "prod", Held: "contested: x"}, correct, ActionBlocked, BlockerContested, []string{"contested: x"}},
		{"rejected", ClassModified, Situation{Cluster: "prod", Rejected: rejected}, correct, ActionBlocked, BlockerRejected, []string{rejected}},
		{"rejected before held", ClassModified, Situation{Rejected: rejected, Held: "contested: x"}, correct, ActionBlocked, BlockerRejected, []string{rejected}},
		{"paused and rejected: the pause blocks, the verdict is said", ClassMissing, Situation{Cluster: "prod", Paused: true, Rejected: rejected},
			correct, ActionBlocked, BlockerClusterPaused, []string{"cluster prod is paused", rejected}},
		{"detect mode and rejected: reported with the verdict", ClassModified, Situation{Rejected: rejected}, Policy{Mode: ModeDetect},
			ActionReport, "", []string{"detect mode", rejected}},
		{"pending: created after its CRD", ClassMissing, Situation{Pending: "its CustomResourceDefinition is created first"}, correct,
			ActionCreate, "", []string{"its CustomResourceDefinition is created first"}},
		{"source trouble", ClassModified, Situation{Degraded: "the source cannot be fetched"}, correct, ActionReport, "", []string{"no corrections while the source cannot be fetched"}},
		{"detect mode wins", ClassModified, Situation{Paused: true}, Policy{Mode: ModeDetect}, ActionReport, "", []string{"detect mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var live *unstructured.Unstructured
			if tt.class == ClassModified {
				live = md
			}
			d := Decide(tt.class, md, live, tt.sit, tt.p)
			if d.Action != tt.want || d.Blocker != tt.blocker {
				t.Errorf("Decide = %s (%q), want %s (%q)", d.Action, d.Blocker, tt.want, tt.blocker)
			}
			for _, r := range tt.reason {
				if !strings.Contains(d.Reason, r) {
					t.Errorf("reason %q does not say %q", d.Reason, r)
				}
			}
			if len(tt.reason) == 0 && d.Reason != "" {
				t.Errorf("reason %q, want none", d.Reason)
			}
		})
	}
}
