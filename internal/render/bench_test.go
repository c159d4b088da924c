package render

import (
	"runtime"
	"testing"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// BenchmarkRender renders a fleet of 1,000 clusters of 8 objects each, one folder a cluster, and
// reports the heap the render holds at its peak (sampled after it) and allocates.
func BenchmarkRender(b *testing.B) {
	root := b.TempDir()
	fixture.BenchFleet(b, root, 1000)
	b.ReportAllocs()
	var kept uint64
	for range b.N {
		res, err := Render(root, "", Options{})
		if err != nil || len(res.Objects) != 8000 {
			b.Fatalf("render: %v", err)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		kept = ms.HeapAlloc
		runtime.KeepAlive(res)
	}
	b.ReportMetric(float64(kept)/(1<<20), "MiB-kept")
}
