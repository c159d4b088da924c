package report

import (
	"strings"
	"testing"
)

func TestBrief(t *testing.T) {
	webhook := `admission webhook "validation.devmachinetemplate.infrastructure.cluster.x-k8s.io" denied the request: ` +
		`DevMachineTemplate.infrastructure.cluster.x-k8s.io "dev1-md-0" is invalid: spec.template.spec: Invalid value: ` +
		`{"kind":"DevMachineTemplate","metadata":{"annotations":{"a":"}\"{["}},"spec":{"template":{"spec":{}}}}: ` +
		`DevMachineTemplate spec.template.spec field is immutable. Please create a new resource instead.`
	tests := []struct{ in, want string }{
		{webhook, `admission webhook "validation.devmachinetemplate.infrastructure.cluster.x-k8s.io" denied the request: ` +
			`DevMachineTemplate.infrastructure.cluster.x-k8s.io "dev1-md-0" is invalid: spec.template.spec: Invalid value: {…}: ` +
			`DevMachineTemplate spec.template.spec field is immutable. Please create a new resource instead.`},
		{`spec.replicas: Invalid value: -1: must be greater than or equal to 0`, `spec.replicas: Invalid value: -1: must be greater than or equal to 0`},
		{`a: Invalid value: ["x","y"]: b; c: Invalid value: {"d":1}: e`, `a: Invalid value: […]: b; c: Invalid value: {…}: e`},
		{`cut: Invalid value: {"unterminated`, `cut: Invalid value: {"unterminated`},
		{`Invalid value: `, `Invalid value: `},
	}
	for _, tt := range tests {
		if got := Brief(tt.in); got != tt.want {
			t.Errorf("Brief(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func FuzzBrief(f *testing.F) {
	f.Add(`x: Invalid value: {"a":"}"}: immutable`)
	f.Add(`Invalid value: [[[`)
	f.Fuzz(func(t *testing.T, s string) {
		got := Brief(s)
		if !strings.Contains(s, "Invalid value: ") && got != s {
			t.Errorf("Brief changed %q without an Invalid value", s)
		}
	})
}
