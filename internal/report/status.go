package report

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
)

// StatusName is the name of the status ConfigMap.
const StatusName = "driftd-status"

// Summary is what the status ConfigMap holds about the last cycle.
type Summary struct {
	// Revision is the source revision the cycle rendered.
	Revision string `json:"revision"`
	// Time is when the summary last changed.
	Time time.Time `json:"time"`
	// Counts are the objects that still drift after the cycle, per cluster and class ("" is
	// objects of no cluster).
	Counts map[string]map[diff.Class]int `json:"counts"`
	// Errors are the source, render and object errors of the cycle.
	Errors []string `json:"errors,omitempty"`
}

// Summarize counts findings per cluster and class, leaving out ignored ones.
func Summarize(revision string, findings []diff.Finding, errs []string) Summary {
	s := Summary{Revision: revision, Counts: map[string]map[diff.Class]int{}, Errors: errs}
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

// Status keeps the status ConfigMap driftd-status.
type Status struct {
	client    client.Client
	namespace string
	last      string
}

// NewStatus returns the status writer for namespace.
func NewStatus(c client.Client, namespace string) *Status {
	return &Status{client: c, namespace: namespace}
}

// Object is the status ConfigMap, as a target for Events.
func (s *Status) Object() *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: StatusName, Namespace: s.namespace}}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	_ = s.client.Get(context.Background(), client.ObjectKeyFromObject(cm), cm) // for the UID, when it exists
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return cm
}

// Write stores sum when it differs from what was last written (the time aside), so that an
// unchanged fleet costs no write.
func (s *Status) Write(ctx context.Context, sum Summary) error {
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
		ObjectMeta: metav1.ObjectMeta{Name: StatusName, Namespace: s.namespace, Labels: map[string]string{"app.kubernetes.io/name": "driftd"}},
		Data: map[string]string{
			"revision":     sum.Revision,
			"time":         sum.Time.UTC().Format(time.RFC3339),
			"summary.json": string(body),
		},
	}
	if err := s.client.Patch(ctx, cm, client.Apply, client.FieldOwner("driftd"), client.ForceOwnership); err != nil {
		return err
	}
	s.last = string(fp)
	return nil
}

// stored returns the fingerprint of the summary the ConfigMap holds, so that a restarted driftd
// does not rewrite an unchanged summary.
func (s *Status) stored(ctx context.Context) string {
	cm := &corev1.ConfigMap{}
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: StatusName}, cm); err != nil {
		return ""
	}
	var sum Summary
	if err := json.Unmarshal([]byte(cm.Data["summary.json"]), &sum); err != nil {
		return ""
	}
	sum.Time = time.Time{}
	fp, _ := json.Marshal(sum)
	return string(fp)
}
