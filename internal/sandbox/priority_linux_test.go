package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv/fixture"
)

// TestABackgroundRenderYieldsTheCPU: every thread of a render in the background runs renderNice
// below the daemon, which keeps its own priority; a render the daemon waits for (its first, with
// nothing to serve corrections from) runs at the daemon's priority.
func TestABackgroundRenderYieldsTheCPU(t *testing.T) {
	own := niceValues(t, os.Getpid())
	daemon := own[os.Getpid()]
	for _, tt := range []struct {
		name       string
		background bool
		want       int
	}{
		{"in the background", true, min(19, daemon+renderNice)},
		{"waited for", false, daemon},
	} {
		t.Run(tt.name, func(t *testing.T) {
			threads := childNiceValues(t, tt.background)
			for tid, nice := range threads {
				if nice != tt.want {
					t.Errorf("the child's thread %d runs at nice %d, want %d (all: %v)", tid, nice, tt.want, threads)
				}
			}
			for tid, nice := range niceValues(t, os.Getpid()) {
				if nice != daemon {
					t.Errorf("the daemon's own thread %d runs at nice %d", tid, nice)
				}
			}
		})
	}
}

// childNiceValues starts a render that blocks once it has its request and reads the nice value of
// each of its child's threads.
func childNiceValues(t *testing.T, background bool) map[int]int {
	root := fixture.WriteTree(t, map[string]string{"fleet/kustomization.yaml": "resources: [a.yaml]\n", "fleet/a.yaml": md("a"), "fleet/HANG": ""})
	t.Setenv(envTestHook, "block:fleet/HANG")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Renderer{Limits: render.Limits{Timeout: time.Minute}}.Render(ctx, root, "fleet", background)
		done <- err
	}()
	defer func() {
		cancel()
		<-done
	}()
	// The child blocks once it has its request and its priority, and says so; by then its
	// runtime has its threads.
	fixture.Eventually(t, 30*time.Second, "the render child at its block", func() bool {
		_, err := os.Stat(filepath.Join(root, "fleet", "HANG.reached"))
		return err == nil
	})
	pid := childPID(t)
	if pid == 0 {
		t.Fatal("no render child of this process")
	}
	threads := niceValues(t, pid)
	if len(threads) == 0 {
		t.Fatal("the child has no threads to read")
	}
	return threads
}

// childPID is the render child this process started, or 0.
func childPID(t *testing.T) int {
	lists, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range lists {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(field)
			if err != nil {
				t.Fatal(err)
			}
			env, err := os.ReadFile(filepath.Join("/proc", field, "environ"))
			if err == nil && strings.Contains("\x00"+string(env), "\x00"+envChild+"=1\x00") {
				return pid
			}
		}
	}
	return 0
}

// niceValues reads the nice value of each of pid's threads (field 19 of its stat).
func niceValues(t *testing.T, pid int) map[int]int {
	stats, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that ended
		}
		// The command name, in parentheses, may hold spaces: count fields after it.
		rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		nice, err := strconv.Atoi(rest[16]) // field 19; rest starts at field 3
		if err != nil {
			t.Fatal(err)
		}
		tid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		out[tid] = nice
	}
	return out
}
