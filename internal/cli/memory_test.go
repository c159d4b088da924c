package cli

import "testing"

func TestTheDaemonLeavesTheRenderItsMemory(t *testing.T) {
	for _, tt := range []struct{ limit, render, want int64 }{
		{1 << 30, 512 << 20, 512 << 20}, // the Deployment's 1Gi, the default render budget
		{2 << 30, 512 << 20, 1536 << 20},
		{512 << 20, 512 << 20, 256 << 20}, // a render budget as large as the limit: the daemon keeps half
	} {
		if got := daemonMemoryLimit(tt.limit, tt.render); got != tt.want {
			t.Errorf("daemonMemoryLimit(%d, %d) = %d, want %d", tt.limit, tt.render, got, tt.want)
		}
	}
}
