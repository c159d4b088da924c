package sandbox

import (
	"context"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv/fixture"
)

// BenchmarkSandboxRender renders the fleet of render's BenchmarkRender (1,000 clusters of 8
// objects) in the sandbox's child process and in-process, and reports what the child costs on top:
// its start, the seccomp filter, and the objects sent back as JSON.
func BenchmarkSandboxRender(b *testing.B) {
	root := b.TempDir()
	fixture.BenchFleet(b, root, 1000)
	var inProcess, sandboxed time.Duration
	for range b.N {
		start := time.Now()
		res, err := render.Render(root, "", render.Options{})
		if err != nil || len(res.Objects) != 8000 {
			b.Fatalf("render: %v", err)
		}
		inProcess += time.Since(start)
		start = time.Now()
		enc, err := Renderer{}.Render(context.Background(), root, "", false)
		if err != nil || len(enc.Objects) != 8000 {
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
