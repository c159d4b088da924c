package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
)

// recordingRenderer renders in the engine's process and records, for each render, whether the
// engine asked for it in the background.
type recordingRenderer struct {
	mu         sync.Mutex
	background []bool
}

func (r *recordingRenderer) Render(ctx context.Context, root, path string, background bool) (*render.Encoded, error) {
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

// brokenRenderer renders in the engine's process and adds an object whose JSON does not decode,
// as a render child gone wrong would send.
type brokenRenderer struct{}

func (brokenRenderer) Render(ctx context.Context, root, path string, background bool) (*render.Encoded, error) {
	res, err := inProcess{}.Render(ctx, root, path, background)
	if res != nil {
		res.Objects = append(res.Objects, render.EncodedObject{JSON: []byte(`{"kind": [`), File: "fleet/bad.yaml"})
	}
	return res, err
}

// TestARenderedObjectThatDoesNotDecodeIsReportedAndPrunesNothing: the object is reported with its
// file, the rest of the render is applied, and since the render is not fully known no orphan is
// deleted.
func TestARenderedObjectThatDoesNotDecodeIsReportedAndPrunesNothing(t *testing.T) {
	ns := "render-undecodable"
	src := newDirSource(t, configMaps(ns, "one", "cm-a", "cm-b"))
	e := newEngine(t, src, env.Client, Options{Policy: diff.Policy{Mode: diff.ModeCorrect, Prune: true}})
	ctx := context.Background()
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first cycle: %v %v", err, res.Errors)
	}
	e.deps.Render = brokenRenderer{}
	src.Set(t, configMaps(ns, "two", "cm-a")) // cm-b leaves Git
	res, err := e.Cycle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errors.Join(res.Errors...).Error(), "fleet/bad.yaml: a rendered object does not decode") {
		t.Errorf("errors %v do not name the object's file", res.Errors)
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-a"}, cm); err != nil || cm.Data["value"] != "two" {
		t.Errorf("cm-a = %v %v; the rest of the render was not applied", cm.Data, err)
	}
	if !configMapExists(t, ns, "cm-b") {
		t.Error("cm-b was pruned by a render that is not fully known")
	}
}

// TestANewCommitSharesTheObjectsItDoesNotChange: the snapshot of a new commit is built beside the
// one in use; an object the commit leaves as it was is the same object in both, not a copy.
func TestANewCommitSharesTheObjectsItDoesNotChange(t *testing.T) {
	ns := "render-shared"
	files := configMaps(ns, "one", "cm-a", "cm-b")
	src := newDirSource(t, files)
	e := newEngine(t, src, env.Client, Options{})
	ctx := context.Background()
	first, _, err := e.refresh(ctx, ctx)
	if err != nil {
		t.Fatal(err)
	}
	files["cm-a.yaml"] = strings.Replace(files["cm-a.yaml"], "value: one", "value: two", 1)
	src.Set(t, files)
	second, _, err := e.refresh(ctx, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("the new commit was not rendered")
	}
	a, b := configMapKey(ns, "cm-a"), configMapKey(ns, "cm-b")
	if second.desired[b] != first.desired[b] {
		t.Error("cm-b, unchanged, was made again")
	}
	if second.desired[a] == first.desired[a] || !strings.Contains(string(second.desired[a].raw), `"two"`) {
		t.Errorf("cm-a, changed, is %s", second.desired[a].raw)
	}
}

// slowRenderer renders in the engine's process after a wait that its context can end.
type slowRenderer struct{ wait time.Duration }

func (r slowRenderer) Render(ctx context.Context, root, path string, background bool) (*render.Encoded, error) {
	select {
	case <-time.After(r.wait):
	case <-ctx.Done():
		return nil, fmt.Errorf("the render was cancelled: %w", ctx.Err())
	}
	return inProcess{}.Render(ctx, root, path, background)
}

// TestARenderIsBoundByItsOwnDeadlineNotTheCycles: a render longer than --cycle-timeout (a new
// commit's, yielding the CPU on a busy node, may be) is not cut by the cycle, which would start it
// again from the beginning every cycle; the cycle's deadline counts from the snapshot on, and the
// cycle completes.
func TestARenderIsBoundByItsOwnDeadlineNotTheCycles(t *testing.T) {
	ns := "render-longer-than-a-cycle"
	e := newEngine(t, newDirSource(t, configMaps(ns, "one", "cm-a")), env.Client, Options{CycleTimeout: time.Second})
	e.deps.Render = slowRenderer{wait: 2 * time.Second}
	res, err := e.Cycle(context.Background())
	if err != nil {
		t.Fatalf("a cycle whose render took twice the cycle's deadline: %v", err)
	}
	if len(res.Errors) > 0 || !res.Complete {
		t.Fatalf("a cycle whose render took twice the cycle's deadline: %v, complete %v", res.Errors, res.Complete)
	}
	if !configMapExists(t, ns, "cm-a") {
		t.Error("the render's object was not created")
	}
}
