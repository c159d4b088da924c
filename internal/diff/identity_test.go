package diff

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func parse(t *testing.T, s string) any {
	t.Helper()
	if s == "" {
		return nil
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCAPAAllows holds the cases of CAPA v2.13.0's isClusterPermittedToUsePrincipal
// (pkg/cloud/scope/session.go:409-457) and its API comments (api/v1beta2/awsidentity_types.go:40-51)
// for namespace team-a labelled tier=gold.
func TestCAPAAllows(t *testing.T) {
	tests := []struct {
		name, allowed string
		want          bool
	}{
		{"absent: \"nil value does not match with any namespaces\"", "", false},
		{"{}: \"empty value matches with all namespaces\"", "{}", true},
		{"list: null is nil, so {list: null} is the empty value", "{list: null}", true},
		{"{list: []}: \"An nil or empty list indicates that AWSClusters cannot use the identity from any namespace\"", "{list: []}", false},
		{"the namespace in the list", "{list: [team-b, team-a]}", true},
		{"another namespace in the list", "{list: [team-b]}", false},
		{"the form CAPA's defaulting webhook stores: {list: [...], selector: {}}, namespace listed", "{list: [team-a], selector: {}}", true},
		{"the form CAPA's defaulting webhook stores, namespace not listed: \"An empty selector indicates that AWSClusters cannot use this AWSClusterIdentity from any namespace\"", "{list: [team-b], selector: {}}", false},
		{"{selector: {}} alone is the empty value", "{selector: {}}", true},
		{"{selector: {matchLabels: {}}}: \"If a Selector has a nil or empty selector, it should match nothing, not everything\"", "{selector: {matchLabels: {}}}", false},
		{"a selector the namespace matches", "{selector: {matchLabels: {tier: gold}}}", true},
		{"a selector it does not", "{selector: {matchLabels: {tier: silver}}}", false},
		{"a selector expression", "{selector: {matchExpressions: [{key: tier, operator: In, values: [gold]}]}}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CAPAAllows(parse(t, tt.allowed), "team-a", map[string]string{"tier": "gold"})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("CAPAAllows(%s) = %v, want %v", tt.allowed, got, tt.want)
			}
		})
	}
}

// TestCAPVAllows holds the cases of CAPV v1.14.0's GetCredentials (pkg/identity/identity.go:72-93).
func TestCAPVAllows(t *testing.T) {
	tests := []struct {
		name, allowed string
		ready, want   bool
	}{
		{"absent: \"allowedNamespaces set to nil, no namespaces are allowed to use this identity\"", "", true, false},
		{"{}: an empty selector is labels.Everything", "{}", true, true},
		{"{selector: {}}", "{selector: {}}", true, true},
		{"a selector the namespace matches", "{selector: {matchLabels: {tier: gold}}}", true, true},
		{"a selector it does not", "{selector: {matchLabels: {tier: silver}}}", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CAPVAllows(parse(t, tt.allowed), tt.ready, map[string]string{"tier": "gold"})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("CAPVAllows(%s) = %v, want %v", tt.allowed, got, tt.want)
			}
		})
	}
	t.Run("\"identity isn't ready to be used yet\"", func(t *testing.T) {
		if ok, err := CAPVAllows(parse(t, "{}"), false, nil); ok || err == nil {
			t.Errorf("an identity not ready: %v, %v", ok, err)
		}
	})
}
