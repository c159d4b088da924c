package main

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestInstallYAMLPinsTheImageByDigest(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	config := filepath.Join(filepath.Dir(here), "..", "..", "config")
	const image = "ghcr.io/driftd/driftd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	out, err := render(config, image)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "image: "+image+"\n") {
		t.Errorf("install.yaml does not run %s:\n%s", image, out)
	}
	for _, kind := range []string{"kind: Namespace", "kind: ClusterRole", "kind: Deployment", "kind: ConfigMap"} {
		if !strings.Contains(string(out), kind) {
			t.Errorf("install.yaml has no %s", kind)
		}
	}
	if _, err := render(config, "ghcr.io/driftd/driftd:latest"); err == nil {
		t.Error("an image without a digest was accepted")
	}
}
