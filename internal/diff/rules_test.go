package diff

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestIgnoredPaths(t *testing.T) {
	rules, err := CompileRules([]IgnoreRule{
		{Paths: []string{"/spec/template/spec/version"}, Target: &Selector{Kind: "MachineDeployment", Name: "edge-.*"}},
		{Paths: []string{"/metadata/annotations/note"}},
		{Paths: []string{"/spec/paused"}, Target: &Selector{Group: "cluster.x-k8s.io", LabelSelector: "env=dev"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	edge := obj(mdObject(3, map[string]any{"env": "dev"}))
	edge.SetName("edge-1")
	other := obj(mdObject(3, nil))
	autoscaled := obj(mdObject(3, nil))
	autoscaled.SetAnnotations(map[string]string{AnnotationAutoscalerMin: "1", AnnotationAutoscalerMax: "9"})
	managed := obj(mdObject(3, nil))
	managed.SetKind("MachinePool")
	managed.SetAnnotations(map[string]string{AnnotationReplicasManagedBy: "external-autoscaler"})

	tests := []struct {
		name          string
		desired, live *unstructured.Unstructured
		want          []string
	}{
		{"name regex, label selector and an untargeted rule", edge, nil,
			[]string{"/spec/template/spec/version", "/metadata/annotations/note", "/spec/paused"}},
		{"only the untargeted rule", other, nil, []string{"/metadata/annotations/note"}},
		{"autoscaler annotations in Git", autoscaled, nil, []string{"/metadata/annotations/note", "/spec/replicas"}},
		{"autoscaler annotations set live only", other, autoscaled, []string{"/metadata/annotations/note", "/spec/replicas"}},
		{"replicas-managed-by on a MachinePool", managed, nil, []string{"/metadata/annotations/note", "/spec/replicas"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, rules.IgnoredPaths(tt.desired, tt.live)); diff != "" {
				t.Errorf("ignored paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileRulesNamesTheBadRule(t *testing.T) {
	tests := []struct {
		rule IgnoreRule
		want string
	}{
		{IgnoreRule{}, "ignore rule 0: paths is empty"},
		{IgnoreRule{Paths: []string{"spec.replicas"}}, `ignore rule 0: path "spec.replicas" is not a JSON pointer`},
		{IgnoreRule{Paths: []string{"/x"}, Target: &Selector{Name: "("}}, "ignore rule 0: target: invalid name regex"},
		{IgnoreRule{Paths: []string{"/x"}, Target: &Selector{LabelSelector: "a in (b"}}, "ignore rule 0: target: invalid label selector"},
	}
	for _, tt := range tests {
		_, err := CompileRules([]IgnoreRule{tt.rule})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CompileRules(%+v) = %v, want %q", tt.rule, err, tt.want)
		}
	}
}

func TestKeepLive(t *testing.T) {
	desired := obj(mdObject(3, nil))
	live := obj(mdObject(9, nil))
	unstructured.RemoveNestedField(live.Object, "spec", "clusterName")
	KeepLive(desired, live, []string{"/spec/replicas", "/spec/clusterName", "/spec/absent/deep"})
	if got, _, _ := unstructured.NestedInt64(desired.Object, "spec", "replicas"); got != 9 {
		t.Errorf("replicas = %d, want the live 9", got)
	}
	if _, ok, _ := unstructured.NestedString(desired.Object, "spec", "clusterName"); ok {
		t.Error("clusterName kept although live has none")
	}
}

func FuzzCompileRules(f *testing.F) {
	f.Add("/spec/replicas", "MachineDeployment", "md-.*", "env=prod,tier in (a,b)", "!skip")
	f.Add("", "(", "", "a in (", "")
	f.Fuzz(func(t *testing.T, path, kind, name, labelSel, annSel string) {
		rules, err := CompileRules([]IgnoreRule{{Paths: []string{path}, Target: &Selector{
			Kind: kind, Name: name, LabelSelector: labelSel, AnnotationSelector: annSel,
		}}})
		if err != nil {
			return
		}
		// A compiled rule must evaluate on any object without panicking.
		o := obj(mdObject(1, map[string]any{"env": "prod"}))
		_ = rules.IgnoredPaths(o, o)
	})
}
