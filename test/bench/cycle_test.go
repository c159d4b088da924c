package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fluxcd/pkg/ssa"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/engine"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/source"
	"github.com/driftd/driftd/internal/testenv"
)

// daemonEngine builds an Engine as `driftd run` does: live objects from an informer cache behind
// the kind gate, dry-runs and writes through a client, the status ConfigMap kept. Every request
// goes through the counter.
func daemonEngine(tb testing.TB, f *benchFleet, counter *requestCounter) (*engine.Engine, client.Reader) {
	tb.Helper()
	cfg := counter.config(env.Config)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		tb.Fatal(err)
	}
	informers, err := cache.New(cfg, cache.Options{Scheme: env.Scheme, Mapper: c.RESTMapper(),
		DefaultUnsafeDisableDeepCopy: ptr(true), DefaultTransform: engine.CacheTransform()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() { _ = informers.Start(ctx) }()
	informers.WaitForCacheSync(ctx)
	src, err := source.New(source.Options{URL: f.repo.Dir, Ref: "main", CacheDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	return engine.New(
		engine.Options{Path: "fleet", Policy: diff.Policy{Mode: diff.ModeCorrect}, Owner: f.owner, LiveFromCache: true},
		engine.Deps{Source: src, Reader: informers, Client: c, Mapper: c.RESTMapper(),
			Kinds: engine.NewWatches(informers, c, c.RESTMapper()), Status: report.NewStatus(c, f.ns, f.owner),
			Memo: engine.NewMemoStore(c, f.ns, f.owner)},
	), informers
}

func cycle(tb testing.TB, e *engine.Engine) *report.Result {
	tb.Helper()
	res, err := e.Cycle(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, err := range res.Errors {
		tb.Error(err)
	}
	return res
}

func TestNoChangeCycleCostsNoRequest(t *testing.T) {
	f := newFleet(t, "no-change", 5)
	counter := &requestCounter{}
	e, informers := daemonEngine(t, f, counter)
	if res := cycle(t, e); len(res.Findings) != 0 {
		t.Fatalf("a fleet applied as driftd would has findings: %+v", res.Findings)
	}

	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: report.StatusName(f.owner)}, &corev1.ConfigMap{}); err != nil {
		t.Fatalf("the first cycle wrote no status ConfigMap: %v", err)
	}

	counter.n.Store(0)
	if res := cycle(t, e); len(res.Findings) != 0 {
		t.Fatalf("findings %+v in an unchanged cycle", res.Findings)
	}
	if n := counter.n.Load(); n != 0 {
		t.Errorf("an unchanged cycle made %d API requests (the status write included), want 0", n)
	}

	// The counter counts: an edit costs the cycle a dry-run and a correction.
	md := f.objects[4].DeepCopy()
	md.SetNamespace(f.ns)
	if err := env.Client.Patch(context.Background(), md, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":9}}`)), client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the cache to see the edit", func() bool {
		live := md.DeepCopy()
		if err := informers.Get(context.Background(), client.ObjectKeyFromObject(md), live); err != nil {
			return false
		}
		r, _, _ := unstructured.NestedInt64(live.Object, "spec", "replicas")
		return r == 9
	})
	counter.n.Store(0)
	if res := cycle(t, e); len(res.Findings) != 1 || res.Findings[0].Object.Name != md.GetName() {
		t.Fatalf("findings %+v after editing %s", res.Findings, md.GetName())
	}
	if n := counter.n.Load(); n == 0 {
		t.Error("the cycle that corrected an edit counted no request")
	}
}

// TestARestartDryRunsOnlyWhatChangedWhileDown: a restarted driftd takes the clean verdicts the
// last one stored, so its first cycle dry-runs the objects that changed while it was down, not the
// fleet.
func TestARestartDryRunsOnlyWhatChangedWhileDown(t *testing.T) {
	f := newFleet(t, "restart", 5)
	first := &requestCounter{}
	e, _ := daemonEngine(t, f, first)
	cycle(t, e)
	if n := first.dryRuns.Load(); n < int64(len(f.objects)) {
		t.Fatalf("the first driftd dry-ran %d objects of %d", n, len(f.objects))
	}

	// While no driftd runs, someone scales one MachineDeployment.
	md := f.objects[4].DeepCopy()
	md.SetNamespace(f.ns)
	if err := env.Client.Patch(context.Background(), md, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":9}}`)), client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	again := &requestCounter{}
	e, _ = daemonEngine(t, f, again)
	res := cycle(t, e)
	if len(res.Findings) != 1 || res.Findings[0].Object.Name != md.GetName() {
		t.Fatalf("findings after the restart %+v, want the edited %s", res.Findings, md.GetName())
	}
	// The edited object: its dry run, and the correction's own dry run inside the apply.
	if n := again.dryRuns.Load(); n > 2 {
		t.Errorf("the restarted driftd made %d dry runs for 1 changed object of %d", n, len(f.objects))
	}
}

// BenchmarkFleet measures driftd on a generated fleet of BENCH_CLUSTERS clusters (default 1,000,
// 8 objects each), applied once and shared by the sub-benchmarks.
func BenchmarkFleet(b *testing.B) {
	n := fleetSize(1000)
	f := newFleet(b, fmt.Sprintf("fleet-%d", n), n)
	b.Logf("fleet: %d clusters, %d objects", n, len(f.objects))
	b.Run("NoChangeCycle", func(b *testing.B) { benchNoChangeCycle(b, f) })
	b.Run("Restart", func(b *testing.B) { benchRestart(b, f) })
	b.Run("DetectionLatency", func(b *testing.B) { benchDetectionLatency(b, f) })
	b.Run("RunPeakRSS", func(b *testing.B) { benchRunPeakRSS(b, f) })
}

// benchNoChangeCycle compares driftd's cycle over an unchanged fleet with what Flux's
// kustomize-controller does every interval: ssa.ResourceManager.Diff (a GET and a server-side
// dry-run) of every object, over the same objects on the same API server.
func benchNoChangeCycle(b *testing.B, f *benchFleet) {
	b.Run("driftd", func(b *testing.B) {
		counter := &requestCounter{}
		e, _ := daemonEngine(b, f, counter)
		cycle(b, e) // the first cycle renders and remembers every object
		counter.n.Store(0)
		b.ResetTimer()
		for range b.N {
			if res := cycle(b, e); len(res.Findings) != 0 {
				b.Fatalf("%d findings in an unchanged fleet", len(res.Findings))
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(counter.n.Load())/float64(b.N), "requests/op")
		b.ReportMetric(float64(len(f.objects)), "objects")
	})

	b.Run("ssa.Diff", func(b *testing.B) {
		counter := &requestCounter{}
		c, err := client.New(counter.config(env.Config), client.Options{Scheme: env.Scheme})
		if err != nil {
			b.Fatal(err)
		}
		rm := ssa.NewResourceManager(c, nil, ssa.Owner{Field: "driftd", Group: "driftd.io"})
		objs := prepared(f)
		b.ResetTimer()
		for range b.N {
			for _, o := range objs {
				entry, _, _, err := rm.Diff(context.Background(), o, ssa.DiffOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if entry.Action != ssa.UnchangedAction {
					b.Fatalf("%s: %s in an unchanged fleet", entry.Subject, entry.Action)
				}
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(counter.n.Load())/float64(b.N), "requests/op")
	})
}

// benchRestart measures what starting costs over a fleet in sync, from a new engine (its watches
// listed and synced) to its first complete report: the very first start, when no driftd stored its
// verdicts yet, and a restart after one did.
func benchRestart(b *testing.B, f *benchFleet) {
	start := func() (int64, time.Duration) {
		counter := &requestCounter{}
		t0 := time.Now()
		e, _ := daemonEngine(b, f, counter)
		if res := cycle(b, e); len(res.Findings) != 0 || !res.Complete {
			b.Fatalf("%d findings (complete: %v) in an unchanged fleet", len(res.Findings), res.Complete)
		}
		return counter.n.Load(), time.Since(t0)
	}
	var firstRequests, requests int64
	var firstTook, took time.Duration
	for range b.N {
		_ = env.Client.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "driftd-memo-" + f.owner}})
		n, d := start()
		firstRequests, firstTook = firstRequests+n, firstTook+d
		n, d = start()
		requests, took = requests+n, took+d
	}
	b.ReportMetric(float64(firstRequests)/float64(b.N), "first-start-requests")
	b.ReportMetric(firstTook.Seconds()/float64(b.N), "first-start-s")
	b.ReportMetric(float64(requests)/float64(b.N), "restart-requests")
	b.ReportMetric(took.Seconds()/float64(b.N), "restart-s")
}

// prepared returns the fleet's objects as driftd applies them: namespaced and tracked.
func prepared(f *benchFleet) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, 0, len(f.objects))
	for _, o := range f.objects {
		c := o.DeepCopy()
		c.SetNamespace(f.ns)
		diff.Track(c, f.owner)
		out = append(out, c)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
