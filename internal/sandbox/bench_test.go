package sandbox

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv/fixture"
)

// BenchmarkSandboxRender renders the fleet of render's BenchmarkRender (1,000 clusters of 8
// objects) in the sandbox's child process and in-process, and reports what the child costs on top
// (its start, the seccomp filter, and the objects sent back as JSON), and the child's CPU time and
// peak resident memory, which the machine's load does not change.
func BenchmarkSandboxRender(b *testing.B) {
	root := b.TempDir()
	fixture.BenchFleet(b, root, 1000)
	var inProcess, sandboxed time.Duration
	cpu0, _ := childrenUsage()
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
	cpu, maxRSS := childrenUsage()
	b.ReportMetric(inProcess.Seconds()/float64(b.N), "s-in-process")
	b.ReportMetric(sandboxed.Seconds()/float64(b.N), "s-sandboxed")
	b.ReportMetric((cpu-cpu0).Seconds()/float64(b.N), "child-CPU-s")
	b.ReportMetric(float64(maxRSS)/(1<<20), "child-peak-RSS-MiB")
}

// childrenUsage is the CPU time of this process' children that ended, and the largest resident
// set any of them had.
func childrenUsage() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss << 10
}

// BenchmarkSandboxProbe is the cost of starting a child: the daemon's start-up check.
func BenchmarkSandboxProbe(b *testing.B) {
	for range b.N {
		if _, err := (Renderer{}).Probe(context.Background(), "http://127.0.0.1:1/"); err != nil {
			b.Fatal(err)
		}
	}
}
