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

// BenchmarkRenderHeld is what a render of 1,000 clusters (8,000 objects) takes on the heap when
// held decoded (Result) and as the daemon holds it, each object as JSON (Encoded).
func BenchmarkRenderHeld(b *testing.B) {
	root := b.TempDir()
	fixture.BenchFleet(b, root, 1000)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var decoded, encoded uint64
	for range b.N {
		before := heap()
		enc := func() *Encoded {
			res, err := Render(root, "", Options{})
			if err != nil || len(res.Objects) != 8000 {
				b.Fatalf("render: %v", err)
			}
			decoded = heap() - before
			enc, err := Encode(res)
			if err != nil {
				b.Fatal(err)
			}
			return enc
		}()
		encoded = heap() - before
		runtime.KeepAlive(enc)
	}
	b.ReportMetric(float64(decoded)/(1<<20), "MiB-decoded")
	b.ReportMetric(float64(encoded)/(1<<20), "MiB-as-JSON")
}
