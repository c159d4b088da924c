package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// controlPlaneBinaries are the binaries envtest starts from the assets folder.
var controlPlaneBinaries = []string{"kube-apiserver", "etcd"}

// binaryAssets returns the folder holding kube-apiserver and etcd: KUBEBUILDER_ASSETS when set
// (the Makefile sets it), else the folder hack/testbin.sh prints, which builds the binaries the
// first time so that a plain `go test ./...` works too.
func binaryAssets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "hack", "testbin.sh"))
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the test bed's control plane with hack/testbin.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}

// ModuleRoot returns the folder of driftd's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside driftd's module (go env GOMOD is %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// guardedAssets returns a folder of wrappers that start each control-plane binary of dir with
// the parent-death signal set (setpriv --pdeathsig KILL), so that kube-apiserver and etcd die
// with the test binary even when it is killed or a test times out and no cleanup runs. envtest
// starts them in their own process group, so they would not get a terminal's interrupt either.
// Without setpriv the binaries are used as they are and only a clean Stop ends them.
func guardedAssets(dir string) (assets string, cleanup func(), err error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "driftd-testbin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(tmp) }
	for _, name := range controlPlaneBinaries {
		real := filepath.Join(dir, name)
		if _, err := os.Stat(real); err != nil {
			cleanup()
			return "", nil, fmt.Errorf("control plane binary missing (run `make testbin`): %w", err)
		}
		script := fmt.Sprintf("#!/bin/sh\nexec %q --pdeathsig KILL %q \"$@\"\n", setpriv, real)
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(script), 0o755); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return tmp, cleanup, nil
}
