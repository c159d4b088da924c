package diff

import (
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// secretFields are the fields of Cluster API's kinds (core providers, CAPA's EKS and Nodeadm
// bootstrap) that carry secret material — files written to nodes (certificates, keys, tokens),
// user passwords, bootstrap tokens, raw Ignition config — relative to where each kind keeps its
// bootstrap spec. A "*" stands for any list index.
var secretFields = []string{
	"/files/*/content",
	"/users/*/passwd",
	"/initConfiguration/bootstrapTokens/*/token",
	"/joinConfiguration/discovery/bootstrapToken/token",
	"/joinConfiguration/discovery/tlsBootstrapToken",
	"/ignition/containerLinuxConfig/additionalConfig",
}

// bootstrapSpecs is where each kind keeps a bootstrap spec.
var bootstrapSpecs = map[string]string{
	"KubeadmConfig":               "/spec",
	"KubeadmConfigTemplate":       "/spec/template/spec",
	"KubeadmControlPlane":         "/spec/kubeadmConfigSpec",
	"KubeadmControlPlaneTemplate": "/spec/template/spec/kubeadmConfigSpec",
	"EKSConfig":                   "/spec",
	"EKSConfigTemplate":           "/spec/template/spec",
	"NodeadmConfig":               "/spec",
	"NodeadmConfigTemplate":       "/spec/template/spec",
}

// MaskedPaths returns the JSON pointers (with "*" for any list index) whose values are never shown
// for obj: the secret-bearing fields of its kind, the data of a Secret, and the configured mask
// rules that select it. A finding still says that such a field drifted and who changed it.
func (r *Rules) MaskedPaths(obj *unstructured.Unstructured) []string {
	if obj == nil {
		return nil
	}
	var paths []string
	if isSecret(obj) {
		paths = append(paths, "/data", "/stringData")
	}
	if prefix, ok := bootstrapSpecs[obj.GetKind()]; ok {
		if g := groupOf(obj); g == "bootstrap.cluster.x-k8s.io" || g == "controlplane.cluster.x-k8s.io" {
			for _, f := range secretFields {
				paths = append(paths, prefix+f)
			}
		}
	}
	if r != nil {
		for _, c := range r.masks {
			if c.target.MatchUnstructured(obj) {
				paths = append(paths, c.paths...)
			}
		}
	}
	return paths
}

// maskFields hides every value at or under a masked path, also inside a value reported whole
// (a list whose length changed).
func maskFields(fields []Field, masked []string) {
	for i := range fields {
		f := &fields[i]
		path := splitPointer(f.Path)
		for _, m := range masked {
			pattern := splitPointer(m)
			switch {
			case covers(pattern, path):
				f.Desired, f.Live = maskValue(f.Desired), maskValue(f.Live)
			case covers(path, pattern[:min(len(path), len(pattern))]) && len(pattern) > len(path):
				rest := pattern[len(path):]
				f.Desired, f.Live = maskWithin(f.Desired, rest), maskWithin(f.Live, rest)
			}
		}
	}
}

// covers reports whether pattern matches path or one of its parents ("*" matches any token).
func covers(pattern, path []string) bool {
	if len(pattern) > len(path) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != path[i] {
			return false
		}
	}
	return true
}

// maskWithin returns a copy of v with every value at the relative pattern masked.
func maskWithin(v any, pattern []string) any {
	if v == nil {
		return nil
	}
	if len(pattern) == 0 {
		return maskValue(v)
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if pattern[0] == "*" || pattern[0] == k {
				out[k] = maskWithin(val, pattern[1:])
			} else {
				out[k] = val
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			if pattern[0] == "*" || pattern[0] == strconv.Itoa(i) {
				out[i] = maskWithin(val, pattern[1:])
			} else {
				out[i] = val
			}
		}
		return out
	}
	return v
}

// SecretValues returns the string values obj holds at masked paths (at least 4 characters long),
// so that messages about obj — an API server's validation error quotes the value it rejects — can
// be scrubbed of them.
func SecretValues(obj *unstructured.Unstructured, masked []string) []string {
	if obj == nil {
		return nil
	}
	var out []string
	for _, m := range masked {
		collect(obj.Object, splitPointer(m), &out)
	}
	return out
}

func collect(v any, pattern []string, out *[]string) {
	if len(pattern) == 0 {
		switch x := v.(type) {
		case string:
			if len(x) >= 4 {
				*out = append(*out, x)
			}
		case map[string]any:
			for _, val := range x {
				collect(val, nil, out)
			}
		case []any:
			for _, val := range x {
				collect(val, nil, out)
			}
		}
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if pattern[0] == "*" || pattern[0] == k {
				collect(val, pattern[1:], out)
			}
		}
	case []any:
		for i, val := range x {
			if pattern[0] == "*" || pattern[0] == strconv.Itoa(i) {
				collect(val, pattern[1:], out)
			}
		}
	}
}

// Scrub replaces every secret value in msg with Masked.
func Scrub(msg string, secrets []string) string {
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, Masked)
	}
	return msg
}
