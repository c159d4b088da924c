package testenv

import (
	"context"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Events returns driftd's Events on an object of namespace as "Reason: note", as
// `kubectl events --for kind/name` would list them.
func (e *Env) Events(tb testing.TB, namespace, kind, name string) []string {
	tb.Helper()
	list := &eventsv1.EventList{}
	if err := e.Client.List(context.Background(), list, client.InNamespace(namespace)); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Regarding.Kind == kind && ev.Regarding.Name == name && ev.ReportingController == "driftd" {
			out = append(out, ev.Reason+": "+ev.Note)
		}
	}
	return out
}
