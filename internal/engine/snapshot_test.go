package engine

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/driftd/driftd/internal/render"
)

// recordingRenderer renders in the engine's process and records, for each render, whether the
// engine asked for it in the background.
type recordingRenderer struct {
	mu         sync.Mutex
	background []bool
}

func (r *recordingRenderer) Render(ctx context.Context, root, path string, background bool) (*render.Result, error) {
	r.mu.Lock()
	r.background = append(r.background, background)
	r.mu.Unlock()
	return inProcess{}.Render(ctx, root, path, background)
}

// TestOnlyARenderBesideAnEarlierOneRunsInTheBackground: the first render is what the engine waits
// for (nothing to correct from before it); a new commit's render runs beside the snapshot the
// engine goes on correcting from, in the background.
func TestOnlyARenderBesideAnEarlierOneRunsInTheBackground(t *testing.T) {
	ns := "render-background"
	src := newDirSource(t, configMaps(ns, "one", "cm-a"))
	e := newEngine(t, src, env.Client, Options{})
	r := &recordingRenderer{}
	e.deps.Render = r
	ctx := context.Background()
	for range 2 { // the second cycle has the same commit: no render
		if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
			t.Fatalf("cycle: %v %v", err, res.Errors)
		}
	}
	src.Set(t, configMaps(ns, "two", "cm-a"))
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("cycle of the new commit: %v %v", err, res.Errors)
	}
	if want := []bool{false, true}; !slices.Equal(r.background, want) {
		t.Errorf("renders asked in the background: %v, want %v", r.background, want)
	}
}
