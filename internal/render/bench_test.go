package render

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkRender renders a fleet of 1,000 clusters of 8 objects each, one folder a cluster, and
// reports the heap the render holds at its peak (sampled after it) and allocates.
func BenchmarkRender(b *testing.B) {
	root := b.TempDir()
	kust := "resources:\n"
	for i := range 1000 {
		dir := filepath.Join(root, fmt.Sprintf("c%04d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		var objs string
		for j := range 8 {
			objs += fmt.Sprintf("---\napiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineDeployment\nmetadata:\n  name: c%04d-md-%d\nspec:\n  clusterName: c%04d\n  replicas: 3\n  template:\n    spec:\n      clusterName: c%04d\n      version: v1.34.1\n      bootstrap:\n        configRef: {apiGroup: bootstrap.cluster.x-k8s.io, kind: KubeadmConfigTemplate, name: x}\n      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: x}\n", i, j, i, i)
		}
		if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(objs), 0o644); err != nil {
			b.Fatal(err)
		}
		kust += fmt.Sprintf("- c%04d/cluster.yaml\n", i)
	}
	if err := os.WriteFile(filepath.Join(root, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		b.Fatal(err)
	}
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
