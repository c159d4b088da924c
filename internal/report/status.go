package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/go-logr/logr"
)

// StatusName is the name of owner's status ConfigMap: each driftd instance (shard) of a
// namespace keeps its own.
func StatusName(owner string) string { return "driftd-status-" + owner }

// Summary is what the status ConfigMap holds about the last cycle.
type Summary struct {
	// Revision is the source revision the cycle rendered.
	Revision string `json:"revision"`
	// Time is when the summary last changed.
	Time time.Time `json:"time"`
	// Counts are the objects that still drift after the cycle, per cluster and class ("" is
	// objects of no cluster).
	Counts map[string]map[diff.Class]int `json:"counts"`
	// Errors are the first MaxErrors source, render and object errors of the cycle, each cut to
	// MaxErrorLength; ErrorCount is how many there were in all.
	Errors     []string `json:"errors,omitempty"`
	ErrorCount int      `json:"errorCount,omitempty"`
}

// MaxErrors and MaxErrorLength bound the status ConfigMap (a ConfigMap holds at most 1 MiB): a
// fleet with thousands of broken objects still gets its summary written.
const (
	MaxErrors      = 50
	MaxErrorLength = 512
)

// Summarize counts findings per cluster and class, leaving out ignored ones, and keeps the first
// MaxErrors errors.
func Summarize(revision string, findings []diff.Finding, errs []string) Summary {
	s := Summary{Revision: revision, Counts: map[string]map[diff.Class]int{}, ErrorCount: len(errs)}
	for _, e := range errs[:min(len(errs), MaxErrors)] {
		s.Errors = append(s.Errors, Cut(e, MaxErrorLength))
	}
	for _, f := range findings {
		if f.Action == diff.ActionIgnored {
			continue
		}
		if s.Counts[f.Cluster] == nil {
			s.Counts[f.Cluster] = map[diff.Class]int{}
		}
		s.Counts[f.Cluster][f.Class]++
	}
	return s
}

// ErrNoNamespace means driftd's own namespace does not exist, so the status ConfigMap (and the
// Events recorded on it) cannot be written; driftd runs on and reports the rest.
var ErrNoNamespace = errors.New("driftd's namespace does not exist")

// Status keeps the status ConfigMap driftd-status-<owner>. Without its namespace (driftd run from a
// laptop, config/ never applied) it says so once and then tries again after a growing wait — one
// minute doubling to 30 — rather than failing the same write every cycle; Events on it wait too.
type Status struct {
	client    client.Client
	namespace string
	name      string
	// Log hears, once, that the namespace is missing and, once, that it is back.
	Log logr.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu      sync.Mutex
	last    string
	uid     types.UID
	wait    time.Time     // no write before then
	backoff time.Duration // the current wait; 0 while writable
}

// NewStatus returns the status writer of owner in namespace.
func NewStatus(c client.Client, namespace, owner string) *Status {
	return &Status{client: c, namespace: namespace, name: StatusName(owner)}
}

// Namespace is the namespace of the status ConfigMap.
func (s *Status) Namespace() string { return s.namespace }

// Object is the status ConfigMap, as a target for Events (with its UID once it was read or written).
func (s *Status) Object() *corev1.ConfigMap {
	s.mu.Lock()
	uid := s.uid
	s.mu.Unlock()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, UID: uid}}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return cm
}

// Writable reports whether the status ConfigMap, and Events on it, can be written: its namespace
// was not found missing.
func (s *Status) Writable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backoff == 0
}

func (s *Status) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Write stores sum when it differs from what was last written (the time aside), so that an
// unchanged fleet costs no write. While its namespace is missing it writes only once the wait
// passed, and returns nil: the missing namespace was said once.
func (s *Status) Write(ctx context.Context, sum Summary) error {
	s.mu.Lock()
	wait := s.wait
	s.mu.Unlock()
	if s.now().Before(wait) {
		return nil
	}
	err := s.write(ctx, sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case errors.Is(err, ErrNoNamespace):
		if s.backoff == 0 {
			s.Log.Error(err, "The status ConfigMap cannot be written: its namespace does not exist. Apply config/ (it creates the namespace) or pass --namespace; drift is still reported as Events on the objects, in the log and the metrics",
				"namespace", s.namespace)
			s.backoff = time.Minute
		} else {
			s.backoff = min(2*s.backoff, 30*time.Minute)
		}
		s.wait = s.now().Add(s.backoff)
		return nil
	case err != nil:
		return err
	}
	if s.backoff > 0 {
		s.Log.Info("The status ConfigMap is written again", "namespace", s.namespace)
	}
	s.backoff, s.wait = 0, time.Time{}
	return nil
}

func (s *Status) write(ctx context.Context, sum Summary) error {
	key := sum
	key.Time = time.Time{}
	fp, err := json.Marshal(key)
	if err != nil {
		return err
	}
	if s.last == "" {
		s.last = s.stored(ctx)
	}
	if string(fp) == s.last {
		return nil
	}
	if sum.Time.IsZero() {
		sum.Time = time.Now()
	}
	body, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: map[string]string{"app.kubernetes.io/name": "driftd"}},
		Data: map[string]string{
			"revision":     sum.Revision,
			"time":         sum.Time.UTC().Format(time.RFC3339),
			"summary.json": string(body),
		},
	}
	if err := s.client.Patch(ctx, cm, client.Apply, client.FieldOwner("driftd"), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: writing ConfigMap %s/%s: %v", ErrNoNamespace, s.namespace, s.name, err)
		}
		return err
	}
	s.mu.Lock()
	s.uid = cm.UID
	s.mu.Unlock()
	s.last = string(fp)
	return nil
}

// stored returns the fingerprint of the summary the ConfigMap holds, so that a restarted driftd
// does not rewrite an unchanged summary.
func (s *Status) stored(ctx context.Context) string {
	cm := &corev1.ConfigMap{}
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.name}, cm); err != nil {
		return ""
	}
	s.mu.Lock()
	s.uid = cm.UID
	s.mu.Unlock()
	var sum Summary
	if err := json.Unmarshal([]byte(cm.Data["summary.json"]), &sum); err != nil {
		return ""
	}
	sum.Time = time.Time{}
	fp, _ := json.Marshal(sum)
	return string(fp)
}
