package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// forbidKind is a KindGate that refuses one kind, as Watches does when driftd's ClusterRole lacks
// a rule for it, and serves every other.
type forbidKind struct{ gvk schema.GroupVersionKind }

func (g forbidKind) Ready(_ context.Context, gvk schema.GroupVersionKind) error {
	if gvk == g.gvk {
		return &KindError{GVK: gvk, Resource: schema.GroupResource{Resource: "configmaps"}, Verbs: []string{"list", "watch"}}
	}
	return nil
}

func (g forbidKind) Serving(gvk schema.GroupVersionKind) bool { return gvk != g.gvk }

// TestAKindDriftdMayNotWatchIsSaidOnceAndTheRestIsChecked: the objects of a kind driftd may not
// read are not checked; the cycle names the missing RBAC rule, one Warning Event says it however
// many cycles and reconciles meet it, a reconcile of such an object is a verdict (not retried),
// and every other object is still corrected.
func TestAKindDriftdMayNotWatchIsSaidOnceAndTheRestIsChecked(t *testing.T) {
	ns := "kind-forbidden"
	c := env.Client
	owner := "kinds"
	status := report.NewStatus(c, ns, owner)
	e := New(Options{Owner: owner, Policy: diff.Policy{Mode: diff.ModeCorrect}}, Deps{
		Source: newDirSource(t, configMaps(ns, "one", "cm-a")), Reader: c, Client: c, Mapper: c.RESTMapper(),
		Kinds:  forbidKind{gvk: corev1.SchemeGroupVersion.WithKind("ConfigMap")},
		Ledger: report.NewLedger(report.NewEvents(report.NewSyncRecorder(c, env.Scheme)), nil, status), Status: status,
	})
	ctx := context.Background()
	for range 2 {
		res, err := e.Cycle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), `resources: ["configmaps"], verbs: [get, list, watch]`) {
			t.Errorf("errors %v, want one naming the missing rule", res.Errors)
		}
	}
	if _, err := e.Reconcile(ctx, configMapKey(ns, "cm-a")); !errors.Is(err, reconcile.TerminalError(nil)) {
		t.Errorf("Reconcile of an object of the forbidden kind: %v, want a verdict", err)
	}
	if configMapExists(t, ns, "cm-a") {
		t.Error("an object of the kind driftd may not read was written")
	}
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); err != nil {
		t.Errorf("the Namespace beside the forbidden kind was not created: %v", err)
	}
	events := &corev1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range events.Items {
		if ev.Reason == report.ReasonKindNotWatched && ev.InvolvedObject.Name == report.StatusName(owner) {
			n += int(max(ev.Count, 1))
		}
	}
	if n != 1 {
		t.Errorf("%d %s Events on the status ConfigMap, want 1", n, report.ReasonKindNotWatched)
	}
}
