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
	if ev := r.event(regarding, related, eventtype, reason, action, fmt.Sprintf(note, args...)); ev != nil {
		r.write(ev)
	}
}

func (r *SyncRecorder) write(ev *eventsv1.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.client.Create(ctx, ev)
}

// event builds the Event; nil when regarding has no reference.
func (r *SyncRecorder) event(regarding, related runtime.Object, eventtype, reason, action, note string) *eventsv1.Event {
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		return nil
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
		Note:                note,
		Type:                eventtype,
	}
	if related != nil {
		if rel, err := reference.GetReference(r.scheme, related); err == nil {
			ev.Related = rel
		}
	}
	return ev
}

// AsyncRecorder writes Events from a queue, so that a reconcile never waits for one. Unlike
// client-go's events broadcaster, it writes each Event it is given as its own: the broadcaster
// folds Events with the same reason on the same object into a series that keeps the first note,
// so a correction blocked first by a suspect inventory and then by a budget would show only the
// first reason. driftd announces each occurrence once itself (Events), so there is no flood to
// fold. When the queue is full an Event is dropped, as the broadcaster drops them.
type AsyncRecorder struct {
	sync  *SyncRecorder
	queue chan *eventsv1.Event
}

var _ events.EventRecorder = (*AsyncRecorder)(nil)

// NewAsyncRecorder returns an AsyncRecorder writing through c, holding up to size Events.
// Start writes them.
func NewAsyncRecorder(c client.Client, scheme *runtime.Scheme, size int) *AsyncRecorder {
	return &AsyncRecorder{sync: NewSyncRecorder(c, scheme), queue: make(chan *eventsv1.Event, size)}
}

// Eventf queues an Event.
func (r *AsyncRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	ev := r.sync.event(regarding, related, eventtype, reason, action, fmt.Sprintf(note, args...))
	if ev == nil {
		return
	}
	select {
	case r.queue <- ev:
	default: // full: dropped
	}
}

// Start writes the queued Events until ctx ends, then what is left for up to 5 seconds.
func (r *AsyncRecorder) Start(ctx context.Context) error {
	for {
		select {
		case ev := <-r.queue:
			r.sync.write(ev)
		case <-ctx.Done():
			deadline := time.After(5 * time.Second)
			for {
				select {
				case ev := <-r.queue:
					r.sync.write(ev)
				case <-deadline:
					return nil
				default:
					return nil
				}
			}
		}
	}
}

// NeedLeaderElection is false: a replica that does not lead records what it reports too.
func (r *AsyncRecorder) NeedLeaderElection() bool { return false }
