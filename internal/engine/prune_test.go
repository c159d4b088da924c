package engine

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// configMaps is a Namespace and a ConfigMap per name in it, each holding value: objects of no
// cluster, which pruning may delete one by one.
func configMaps(ns, value string, names ...string) map[string]string {
	files := map[string]string{"namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"}
	resources := []string{"namespace.yaml"}
	for _, name := range names {
		files[name+".yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\ndata:\n  value: " + value + "\n"
		resources = append(resources, name+".yaml")
	}
	files["kustomization.yaml"] = "resources:\n- " + strings.Join(resources, "\n- ") + "\n"
	return files
}

func configMapKey(ns, name string) diff.Key {
	return diff.Key{Kind: "ConfigMap", Namespace: ns, Name: name}
}

func configMapExists(tb testing.TB, ns, name string) bool {
	tb.Helper()
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.ConfigMap{})
	if err != nil && !apierrors.IsNotFound(err) {
		tb.Fatal(err)
	}
	return err == nil
}

// TestAnOrphanIsPrunedOnlyAfterACycleThatAppliedEverything: an object that left Git is deleted
// under --prune, but not in a cycle where another object of the render could not be applied (it
// might be the very object the orphan is, renamed): that cycle says so and deletes nothing.
func TestAnOrphanIsPrunedOnlyAfterACycleThatAppliedEverything(t *testing.T) {
	ns := "prune-after-apply"
	src := newDirSource(t, configMaps(ns, "one", "cm-a", "cm-b"))
	proxy := env.NewAPIProxy(t)
	e := newEngine(t, src, proxyClient(t, proxy), Options{Policy: diff.Policy{Mode: diff.ModeCorrect, Prune: true}})
	ctx := context.Background()
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first cycle: %v %v", err, res.Errors)
	}

	// cm-b leaves Git while cm-a changes, and the API server fails every dry run of cm-a.
	src.Set(t, configMaps(ns, "two", "cm-a"))
	fault := proxy.Inject(&testenv.Fault{Match: testenv.DryRunPatch("/configmaps/cm-a"), Status: http.StatusServiceUnavailable, Times: 100})
	res, err := e.Cycle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if proxy.FaultHits(fault) == 0 {
		t.Fatal("cm-a was never dry-run; the test proved nothing")
	}
	if len(res.Errors) == 0 {
		t.Error("a cycle that could not check cm-a reports no error")
	}
	if !configMapExists(t, ns, "cm-b") {
		t.Fatal("cm-b was pruned in a cycle that could not apply cm-a")
	}
	for _, f := range res.Findings {
		if f.Class == diff.ClassOrphaned {
			t.Errorf("orphan %s found in a cycle that could not apply the render", f.Object)
		}
	}

	proxy.Remove(fault)
	res, err = e.Cycle(ctx)
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("third cycle: %v %v", err, res.Errors)
	}
	if configMapExists(t, ns, "cm-b") {
		t.Error("cm-b was not pruned once the whole render was applied")
	}
	i := slices.IndexFunc(res.Findings, func(f diff.Finding) bool { return f.Object.Key() == configMapKey(ns, "cm-b") })
	if i < 0 || res.Findings[i].Class != diff.ClassOrphaned || res.Findings[i].Action != diff.ActionDelete {
		t.Errorf("findings %+v, want cm-b Orphaned and deleted", res.Findings)
	}
	if len(res.Remaining()) != 0 {
		t.Errorf("remaining after the prune: %+v", res.Remaining())
	}
}

// TestAnObjectRefusedAtItsCreationHoldsBackThePrune: a new object is created without a dry run
// before (createsUnchecked), so its creation is where the API server refuses it. That refusal
// makes the render unusable for pruning as a dry run's would (the refused object might be the
// orphan, renamed): the orphan stays, in that cycle and the next, which remembers the verdict, and
// goes once Git's new object is valid.
func TestAnObjectRefusedAtItsCreationHoldsBackThePrune(t *testing.T) {
	ns := "prune-refused-creation"
	src := newDirSource(t, configMaps(ns, "one", "cm-a", "cm-b"))
	e := newEngine(t, src, env.Client, Options{Policy: diff.Policy{Mode: diff.ModeCorrect, Prune: true}})
	ctx := context.Background()
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first cycle: %v %v", err, res.Errors)
	}
	withMD := func(replicas string) map[string]string {
		files := configMaps(ns, "one", "cm-a") // cm-b leaves Git
		files["md.yaml"] = fleet(ns, replicas)["md.yaml"]
		files["kustomization.yaml"] += "- md.yaml\n"
		return files
	}
	src.Set(t, withMD("-2"))
	for _, cycle := range []string{"the cycle that creates it", "the next cycle"} {
		res, err := e.Cycle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !configMapExists(t, ns, "cm-b") {
			t.Fatalf("cm-b pruned in %s, while the API server refuses md-0", cycle)
		}
		i := slices.IndexFunc(res.Findings, func(f diff.Finding) bool { return f.Object.Key() == mdKey(ns) })
		if i < 0 || res.Findings[i].Blocker != diff.BlockerRejected {
			t.Errorf("%s: findings %+v, want md-0 blocked as rejected", cycle, res.Findings)
		}
	}
	src.Set(t, withMD("3"))
	if res, err := e.Cycle(ctx); err != nil || len(res.Errors) > 0 {
		t.Fatalf("cycle with a valid md-0: %v %v", err, res.Errors)
	}
	if configMapExists(t, ns, "cm-b") {
		t.Error("cm-b not pruned once every object of the render was created")
	}
}

// TestOneSchedulerRetries: a transient failure is retried by the workqueue alone in the daemon (the
// cycle makes one try and hands the object over), and by the cycle itself without a workqueue
// (run --once), a few times.
func TestOneSchedulerRetries(t *testing.T) {
	for _, daemon := range []bool{true, false} {
		name := "run --once"
		if daemon {
			name = "daemon"
		}
		t.Run(name, func(t *testing.T) {
			ns := "one-scheduler-" + map[bool]string{true: "daemon", false: "once"}[daemon]
			proxy := env.NewAPIProxy(t)
			e := newEngine(t, newDirSource(t, configMaps(ns, "one", "cm-a", "cm-b")), proxyClient(t, proxy), Options{})
			var requeued []diff.Key
			if daemon {
				e.SetRequeue(func(k diff.Key) { requeued = append(requeued, k) })
			}
			ctx := context.Background()
			createNamespace(t, e, ns)
			// cm-a is missing: its creation is the first request that checks it.
			fault := proxy.Inject(&testenv.Fault{Match: testenv.Patch("/configmaps/cm-a"), Status: http.StatusTooManyRequests, Times: 100})
			res, err := e.Cycle(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tries, wantTries := proxy.FaultHits(fault), 1+transientRetries
			var wantRequeued []diff.Key
			if daemon {
				wantTries, wantRequeued = 1, []diff.Key{configMapKey(ns, "cm-a")}
			}
			if tries != wantTries {
				t.Errorf("cm-a tried %d times in the cycle, want %d", tries, wantTries)
			}
			if !slices.Equal(requeued, wantRequeued) {
				t.Errorf("handed to the workqueue: %v, want %v", requeued, wantRequeued)
			}
			if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), "cm-a") {
				t.Errorf("errors %v, want one naming cm-a", res.Errors)
			}
			if !configMapExists(t, ns, "cm-b") {
				t.Error("cm-b was not created beside the failing cm-a")
			}
		})
	}
}
