package testenv

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Decision is what a test's admission webhook answers: allowed, or denied with a status code and
// a message.
type Decision struct {
	Allowed bool
	Code    int32
	Message string
}

// Webhook is a validating admission webhook served on a loopback HTTPS port and registered with
// the test bed's API server for some rules in one namespace, so that a test decides what the API
// server admits there, as a provider's webhook would.
type Webhook struct {
	mu     sync.Mutex
	decide func(*admissionv1.AdmissionRequest) Decision
	refuse func(*admissionv1.AdmissionRequest) bool
	calls  int
}

// NewValidatingWebhook serves decide for the requests that rules select in namespace, and removes
// the registration when the test ends.
func (e *Env) NewValidatingWebhook(tb testing.TB, name, namespace string, rules []admissionregistrationv1.RuleWithOperations,
	decide func(*admissionv1.AdmissionRequest) Decision) *Webhook {
	tb.Helper()
	w := &Webhook{decide: decide}
	srv := httptest.NewTLSServer(http.HandlerFunc(w.serve))
	tb.Cleanup(srv.Close)
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	timeout := int32(5)
	url := srv.URL + "/validate"
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    name + ".test.driftd.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
			Rules:                   rules,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := e.Client.Create(context.Background(), cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Client.Delete(context.Background(), cfg) })
	return w
}

// Calls returns how many admission requests the webhook answered.
func (w *Webhook) Calls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}

// Decide replaces the webhook's decision function.
func (w *Webhook) Decide(decide func(*admissionv1.AdmissionRequest) Decision) {
	w.mu.Lock()
	w.decide = decide
	w.mu.Unlock()
}

// Refuse makes the webhook hang up, with no answer, on the requests refuse selects (nil: none),
// as a webhook whose pods are gone: the API server cannot call it.
func (w *Webhook) Refuse(refuse func(*admissionv1.AdmissionRequest) bool) {
	w.mu.Lock()
	w.refuse = refuse
	w.mu.Unlock()
}

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(r.Body).Decode(review); err != nil || review.Request == nil {
		http.Error(rw, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	refuse := w.refuse
	if refuse == nil || !refuse(review.Request) {
		w.calls++
	}
	decide := w.decide
	w.mu.Unlock()
	if refuse != nil && refuse(review.Request) {
		if conn, _, err := http.NewResponseController(rw).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	d := decide(review.Request)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: d.Allowed}
	if !d.Allowed {
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: d.Code, Message: d.Message}
	}
	review.Response = resp
	review.Request = nil
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(review)
}
