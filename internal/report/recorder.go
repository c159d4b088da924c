package report

import (
	"context"
	"fmt"
	"os"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SyncRecorder writes each Event before it returns. `driftd run --once` uses it: a process that
// exits right after its cycle would lose the Events an asynchronous broadcaster still holds.
type SyncRecorder struct {
	client   client.Client
	scheme   *runtime.Scheme
	instance string
}

var _ events.EventRecorder = (*SyncRecorder)(nil)

// NewSyncRecorder returns a SyncRecorder writing through c.
func NewSyncRecorder(c client.Client, scheme *runtime.Scheme) *SyncRecorder {
	host, _ := os.Hostname()
	return &SyncRecorder{client: c, scheme: scheme, instance: ReportingController + "-" + host}
}

// Eventf records an events.k8s.io/v1 Event regarding obj; failures are dropped, as the
// asynchronous recorder drops them.
func (r *SyncRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		return
	}
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	now := time.Now()
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ns},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: ReportingController,
		ReportingInstance:   r.instance,
		Action:              action,
		Reason:              reason,
		Regarding:           *ref,
		Note:                fmt.Sprintf(note, args...),
		Type:                eventtype,
	}
	if related != nil {
		if rel, err := reference.GetReference(r.scheme, related); err == nil {
			ev.Related = rel
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.client.Create(ctx, ev)
}
