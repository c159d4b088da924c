package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

var (
	gvkAWSMachine = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachine"}
	gvkVSMachine  = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "VSphereMachine"}
)

// healthCheck creates a MachineHealthCheck selecting the Machines of a deployment.
func healthCheck(tb testing.TB, ns, cluster, deployment string) {
	tb.Helper()
	mhc := &unstructured.Unstructured{}
	mhc.SetGroupVersionKind(diff.GVKMachineHealthCheck)
	mhc.SetNamespace(ns)
	mhc.SetName(deployment + "-mhc")
	mhc.Object["spec"] = map[string]any{"clusterName": cluster, "selector": map[string]any{"matchLabels": map[string]any{"pool": deployment}}}
	if err := env.Client.Create(context.Background(), mhc); err != nil {
		tb.Fatal(err)
	}
}

func deleteMachine(tb testing.TB, ns, name string) {
	tb.Helper()
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(diff.GVKMachine)
	m.SetNamespace(ns)
	m.SetName(name)
	if err := env.Client.Delete(context.Background(), m); err != nil {
		tb.Fatal(err)
	}
}

// motoProxy puts a proxy in front of moto and points the SDK's standard variable at it: seen is
// called with each request's body after moto answered and before the answer is passed on (it may
// count, or wait to make the cloud slow).
func motoProxy(t *testing.T, cloud *awsCloud, seen func(body []byte)) {
	t.Helper()
	moto, _ := url.Parse(cloud.moto.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(moto)
	rp.Transport = testenv.HTTP.Transport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		seen(body)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
}
