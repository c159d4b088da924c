package engine

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/render"
)

// TestARestartTakesTheRenderKeptOfItsCommit: a second engine on the same commit (a restarted
// daemon) renders nothing: it takes the render the first kept, and corrects from it an edit made
// meanwhile; the next commit is rendered again.
func TestARestartTakesTheRenderKeptOfItsCommit(t *testing.T) {
	ns := "render-kept"
	src := newDirSource(t, configMaps(ns, "one", "cm-a"))
	kept := &render.Cache{File: filepath.Join(t.TempDir(), "render"), Salt: func() ([]byte, error) { return []byte(t.Name()), nil }}
	ctx := context.Background()
	cycle := func(e *Engine, what string) {
		t.Helper()
		if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 || !res.Complete {
			t.Fatalf("%s: %v %v", what, err, res.Errors)
		}
	}
	first := &recordingRenderer{}
	e := newEngine(t, src, env.Client, Options{})
	e.deps.Render, e.deps.Renders = first, kept
	cycle(e, "the first engine's cycle")
	if len(first.background) != 1 {
		t.Fatalf("the first engine rendered %d times, want 1", len(first.background))
	}

	// While no driftd runs, another writer edits the ConfigMap.
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-a"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["value"] = "edited"
	if err := env.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}

	second := &recordingRenderer{}
	e = newEngine(t, src, env.Client, Options{})
	e.deps.Render, e.deps.Renders = second, kept
	cycle(e, "the restarted engine's cycle")
	if len(second.background) != 0 {
		t.Errorf("the restarted engine rendered %d times the commit rendered before it, want 0", len(second.background))
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-a"}, cm); err != nil || cm.Data["value"] != "one" {
		t.Errorf("after the restart's cycle cm-a holds %q (%v), want Git's %q", cm.Data["value"], err, "one")
	}

	src.Set(t, configMaps(ns, "two", "cm-a"))
	cycle(e, "the cycle of a new commit")
	if len(second.background) != 1 {
		t.Errorf("the new commit was rendered %d times, want 1", len(second.background))
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-a"}, cm); err != nil || cm.Data["value"] != "two" {
		t.Errorf("after the new commit cm-a holds %q (%v), want %q", cm.Data["value"], err, "two")
	}
}

// TestAStandbyKeepsTheRenderOfTheHeadForATakeover: Prepare, a standby's, renders the head once
// and sends no request to the API server; the engine's first cycle after it (the takeover)
// renders nothing and applies the kept render; Prepare then does nothing more.
func TestAStandbyKeepsTheRenderOfTheHeadForATakeover(t *testing.T) {
	ns := "render-standby"
	src := newDirSource(t, configMaps(ns, "one", "cm-a"))
	proxy := env.NewAPIProxy(t)
	r := &recordingRenderer{}
	e := newEngine(t, src, proxyClient(t, proxy), Options{})
	e.deps.Render = r
	e.deps.Renders = &render.Cache{File: filepath.Join(t.TempDir(), "render"), Salt: func() ([]byte, error) { return []byte(t.Name()), nil }}
	ctx := context.Background()
	proxy.Reset()
	for range 2 { // the second finds the head's render kept already
		if err := e.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if sent := proxy.Requests(nil); len(sent) > 0 {
		t.Errorf("Prepare sent %d requests to the API server, the first %s %s; a standby sends none", len(sent), sent[0].Method, sent[0].Path)
	}
	if len(r.background) != 1 || !r.background[0] {
		t.Fatalf("Prepare rendered %v (background or not), want one render in the background", r.background)
	}

	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 || !res.Complete {
		t.Fatalf("the takeover's cycle: %v %v", err, res.Errors)
	}
	if len(r.background) != 1 {
		t.Errorf("the takeover rendered again (%d renders in all), want the kept render", len(r.background))
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-a"}, cm); err != nil || cm.Data["value"] != "one" {
		t.Errorf("cm-a after the takeover's cycle: %v %v", cm.Data, err)
	}
	src.Set(t, configMaps(ns, "two", "cm-a"))
	if err := e.Prepare(ctx); err != nil || len(r.background) != 1 {
		t.Errorf("Prepare after a cycle ran: %v, %d renders; want nothing done", err, len(r.background))
	}
}
