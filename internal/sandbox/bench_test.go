package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/render"
)

// BenchmarkSandboxRender renders the fleet of render's BenchmarkRender (1,000 clusters of 8
// objects) in the sandbox's child process and in-process, and reports what the child costs on top:
// its start, the seccomp filter, and the objects sent back as JSON.
func BenchmarkSandboxRender(b *testing.B) {
	root := b.TempDir()
	kust := "resources:\n"
	for i := range 1000 {
		dir := filepath.Join(root, fmt.Sprintf("c%04d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		var objs string
		for j := range 8 {
			objs += fmt.Sprintf("---\napiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineDeployment\nmetadata:\n  name: c%04d-md-%d\nspec:\n  clusterName: c%04d\n  replicas: 3\n  template:\n    spec:\n      clusterName: c%04d\n      version: v1.34.1\n", i, j, i, i)
		}
		if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(objs), 0o644); err != nil {
			b.Fatal(err)
		}
		kust += fmt.Sprintf("- c%04d/cluster.yaml\n", i)
	}
	if err := os.WriteFile(filepath.Join(root, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		b.Fatal(err)
	}
	var inProcess, sandboxed time.Duration
	for range b.N {
		start := time.Now()
		res, err := render.Render(root, "", render.Options{})
		if err != nil || len(res.Objects) != 8000 {
			b.Fatalf("render: %v", err)
		}
		inProcess += time.Since(start)
		start = time.Now()
		res, err = Renderer{}.Render(context.Background(), root, "")
		if err != nil || len(res.Objects) != 8000 {
			b.Fatalf("sandboxed render: %v", err)
		}
		sandboxed += time.Since(start)
	}
	b.ReportMetric(inProcess.Seconds()/float64(b.N), "s-in-process")
	b.ReportMetric(sandboxed.Seconds()/float64(b.N), "s-sandboxed")
}

// BenchmarkSandboxProbe is the cost of starting a child: the daemon's start-up check.
func BenchmarkSandboxProbe(b *testing.B) {
	for range b.N {
		if _, err := (Renderer{}).Probe(context.Background(), "http://127.0.0.1:1/"); err != nil {
			b.Fatal(err)
		}
	}
}
