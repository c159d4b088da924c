package diff

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func kct(content, passwd string, files int) *unstructured.Unstructured {
	var fs []any
	for range files {
		fs = append(fs, map[string]any{"path": "/etc/kubernetes/pki/ca.key", "content": content})
	}
	return obj(map[string]any{
		"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2", "kind": "KubeadmConfigTemplate",
		"metadata": map[string]any{"name": "md-0", "namespace": "fleet"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"files": fs,
			"users": []any{map[string]any{"name": "ops", "passwd": passwd}},
			"joinConfiguration": map[string]any{"discovery": map[string]any{
				"bootstrapToken": map[string]any{"token": "abcdef.0123456789abcdef"}}},
		}}},
	})
}

// TestSecretBearingFieldsAreMaskedButStillReported: a changed certificate, password or bootstrap
// token is drift, with its path and who changed it — never its value, also inside a list reported
// whole and in a configured mask.
func TestSecretBearingFieldsAreMaskedButStillReported(t *testing.T) {
	rules, err := CompileRules(nil, IgnoreRule{Paths: []string{"/spec/template/spec/preKubeadmCommands"}, Target: &Selector{Kind: "KubeadmConfigTemplate"}})
	if err != nil {
		t.Fatal(err)
	}
	desired := kct("-----BEGIN RSA PRIVATE KEY-----git", "$6$git-hash", 1)
	_ = unstructured.SetNestedStringSlice(desired.Object, []string{"echo token=git-preflight"}, "spec", "template", "spec", "preKubeadmCommands")
	for name, live := range map[string]*unstructured.Unstructured{
		"same shape":           kct("-----BEGIN RSA PRIVATE KEY-----live", "$6$live-hash", 1),
		"a file added (whole)": kct("-----BEGIN RSA PRIVATE KEY-----live", "$6$live-hash", 2),
	} {
		t.Run(name, func(t *testing.T) {
			fields := Compare(desired, live, nil, rules.MaskedPaths(desired))
			if len(fields) == 0 {
				t.Fatal("no drift found in secret-bearing fields")
			}
			js, _ := json.Marshal(fields)
			for _, secret := range []string{"git-hash", "live-hash", "KEY-----git", "KEY-----live", "git-preflight"} {
				if strings.Contains(string(js), secret) {
					t.Errorf("the findings show %q: %s", secret, js)
				}
			}
			paths := map[string]bool{}
			for _, f := range fields {
				paths[f.Path] = true
			}
			if name == "same shape" && (!paths["/spec/template/spec/files/0/content"] || !paths["/spec/template/spec/users/0/passwd"]) {
				t.Errorf("the drifted secret fields are not named: %s", js)
			}
		})
	}
}

func TestSecretValuesAreScrubbedFromMessages(t *testing.T) {
	desired := kct("-----BEGIN RSA PRIVATE KEY-----MIIE", "$6$rounds=4096$salt$hash", 1)
	secrets := SecretValues(desired, (*Rules)(nil).MaskedPaths(desired))
	msg := `KubeadmConfigTemplate.bootstrap.cluster.x-k8s.io "md-0" is invalid: spec.template.spec.users[0].passwd: Invalid value: "$6$rounds=4096$salt$hash": too long; token "abcdef.0123456789abcdef"`
	got := Scrub(msg, secrets)
	if strings.Contains(got, "rounds=4096") || strings.Contains(got, "0123456789abcdef") || !strings.Contains(got, "users[0].passwd") {
		t.Errorf("Scrub = %q", got)
	}
}

func FuzzMaskedPaths(f *testing.F) {
	f.Add("/spec/template/spec/files/*/content", "KubeadmConfigTemplate")
	f.Add("/*/*", "Secret")
	f.Fuzz(func(t *testing.T, path, kind string) {
		rules, err := CompileRules(nil, IgnoreRule{Paths: []string{path}, Target: &Selector{Kind: kind}})
		if err != nil {
			return
		}
		o := kct("secret-content", "secret-passwd", 2)
		masked := rules.MaskedPaths(o)
		fields := Compare(o, kct("other-content", "other-passwd", 1), nil, masked)
		js, _ := json.Marshal(fields)
		for _, s := range []string{"secret-content", "other-content", "secret-passwd", "other-passwd"} {
			if strings.Contains(string(js), s) {
				t.Fatalf("mask %q shows %q: %s", path, s, js)
			}
		}
		_ = SecretValues(o, masked)
	})
}
