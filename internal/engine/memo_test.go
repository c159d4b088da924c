package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
)

// engineWithMemo is an engine over src that keeps its status and its clean verdicts in ns, as the
// daemon does, reading and writing through c.
func engineWithMemo(tb testing.TB, src Fetcher, c client.Client, ns string, opts Options) *Engine {
	tb.Helper()
	opts.Owner = "memo"
	opts.Policy.Mode = diff.ModeCorrect
	return New(opts, Deps{Source: src, Reader: c, Client: c, Mapper: c.RESTMapper(),
		Status: report.NewStatus(c, ns, opts.Owner), Memo: NewMemoStore(c, ns, opts.Owner)})
}

// dryRuns are the names of the objects dry-run through p, each once (a correction's apply
// dry-runs again).
func dryRuns(p *testenv.APIProxy) []string {
	var out []string
	for _, r := range p.Requests(func(r testenv.Request) bool { return r.DryRun }) {
		if name := r.Path[strings.LastIndex(r.Path, "/")+1:]; !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// TestARestartedEngineDryRunsOnlyWhatChanged: a new engine (a restarted driftd) takes what the
// last one found equal to Git as clean without asking the API server again; what changed in Git
// meanwhile, and everything under other ignore rules, is dry-run.
func TestARestartedEngineDryRunsOnlyWhatChanged(t *testing.T) {
	ns := "memo-restart"
	src := newDirSource(t, configMaps(ns, "one", "cm-a", "cm-b", "cm-c"))
	ctx := context.Background()
	if res, err := engineWithMemo(t, src, env.Client, ns, Options{}).Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first driftd: %v %v", err, res.Errors)
	}

	proxy := env.NewAPIProxy(t)
	restarted := engineWithMemo(t, src, proxyClient(t, proxy), ns, Options{})
	if res, err := restarted.Cycle(ctx); err != nil || len(res.Errors) > 0 || len(res.Findings) > 0 {
		t.Fatalf("restarted: %v %v %+v", err, res.Errors, res.Findings)
	}
	if got := dryRuns(proxy); len(got) != 0 {
		t.Errorf("the restarted driftd dry-ran %v; everything was clean and unchanged", got)
	}

	files := configMaps(ns, "one", "cm-a", "cm-c")
	for k, v := range configMaps(ns, "two", "cm-b") {
		if k != "kustomization.yaml" {
			files[k] = v
		}
	}
	files["kustomization.yaml"] = "resources:\n- namespace.yaml\n- cm-a.yaml\n- cm-b.yaml\n- cm-c.yaml\n"
	src.Set(t, files)
	proxy.Reset()
	if _, err := engineWithMemo(t, src, proxyClient(t, proxy), ns, Options{}).Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dryRuns(proxy); len(got) != 1 || got[0] != "cm-b" {
		t.Errorf("dry runs after cm-b changed in Git: %v, want [cm-b]", got)
	}

	rules, err := diff.CompileRules([]diff.IgnoreRule{{Paths: []string{"/data/other"}}})
	if err != nil {
		t.Fatal(err)
	}
	proxy.Reset()
	if _, err := engineWithMemo(t, src, proxyClient(t, proxy), ns, Options{Rules: rules}).Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dryRuns(proxy); len(got) != 4 {
		t.Errorf("dry runs under other ignore rules: %v, want all 4 objects", got)
	}
}

// TestACorrectionBetweenCyclesIsRememberedAcrossARestart: an object the workqueue corrected after
// a watch event is stored as clean by the next cycle (a quiet one, which has nothing else to
// store), so a restarted driftd does not dry-run it again.
func TestACorrectionBetweenCyclesIsRememberedAcrossARestart(t *testing.T) {
	ns := "memo-between"
	src := newDirSource(t, configMaps(ns, "one", "cm-a", "cm-b"))
	ctx := context.Background()
	e := engineWithMemo(t, src, env.Client, ns, Options{})
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first cycle: %v %v", err, res.Errors)
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-b"}, cm); err != nil {
		t.Fatal(err)
	}
	edited := cm.DeepCopy()
	edited.Data["value"] = "edited"
	if err := env.Client.Patch(ctx, edited, client.MergeFrom(cm), client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reconcile(ctx, configMapKey(ns, "cm-b")); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cm-b"}, cm); err != nil || cm.Data["value"] != "one" {
		t.Fatalf("cm-b after the workqueue's reconcile: %v %v, want it corrected", cm.Data, err)
	}
	for range 2 { // the first stores the correction's verdict, the second changes nothing
		if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 || len(res.Findings) > 0 {
			t.Fatalf("cycle after the correction: %v %v %+v", err, res.Errors, res.Findings)
		}
	}

	proxy := env.NewAPIProxy(t)
	if res, err := engineWithMemo(t, src, proxyClient(t, proxy), ns, Options{}).Cycle(ctx); err != nil || len(res.Errors) > 0 || len(res.Findings) > 0 {
		t.Fatalf("restarted: %v %v %+v", err, res.Errors, res.Findings)
	}
	if got := dryRuns(proxy); len(got) != 0 {
		t.Errorf("the restarted driftd dry-ran %v; the correction's verdict was stored", got)
	}
}
