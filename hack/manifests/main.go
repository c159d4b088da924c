// Command manifests prints install.yaml: config/default rendered as `kubectl kustomize` renders it,
// with driftd's image pinned by digest — what a release attaches, and what
// `kubectl apply -f install.yaml` installs.
//
//	go run ./hack/manifests -image ghcr.io/driftd/driftd@sha256:... > install.yaml
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	image := flag.String("image", "", "the image, pinned by digest: REPOSITORY@sha256:DIGEST")
	config := flag.String("config", "config", "the config/ folder")
	flag.Parse()
	out, err := render(*config, *image)
	if err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
	_, _ = os.Stdout.Write(out)
}

// render builds config/default with the image replaced by image, which must carry a digest.
func render(config, image string) ([]byte, error) {
	repository, digest, ok := strings.Cut(image, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") || repository == "" {
		return nil, fmt.Errorf("-image %q: want REPOSITORY@sha256:DIGEST (install.yaml pins the image by digest)", image)
	}
	abs, err := filepath.Abs(filepath.Join(config, "default"))
	if err != nil {
		return nil, err
	}
	// An overlay in memory over the folder on disk: kustomize's own images transformer pins it.
	fs := filesys.MakeFsOnDisk()
	dir, err := os.MkdirTemp("", "driftd-manifests-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		return nil, err
	}
	kustomization := fmt.Sprintf("resources:\n- %s\nimages:\n- name: ghcr.io/driftd/driftd\n  newName: %s\n  digest: %s\n", rel, repository, digest)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		return nil, err
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	if err != nil {
		return nil, err
	}
	y, err := rm.AsYaml()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# driftd: config/default, its image pinned by digest. kubectl apply -f install.yaml\n")
	b.Write(y)
	return b.Bytes(), nil
}
