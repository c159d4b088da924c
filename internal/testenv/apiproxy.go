package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// APIProxy is a reverse proxy in front of the test bed's API server, on a loopback port. A test
// points driftd at it to see every request driftd makes and to answer chosen ones with an error,
// as an overloaded or restarting API server would (429, 503; without Retry-After, so the client
// does not absorb them by retrying on its own): the faults are real HTTP answers,
// and everything else reaches the real API server.
type APIProxy struct {
	// URL is the proxy's address (plain HTTP; the proxy authenticates upstream as the admin).
	URL string

	mu       sync.Mutex
	faults   []*Fault
	requests []Request
}

// Request is one request that went through the proxy.
type Request struct {
	Method, Path string
	// DryRun: the request had dryRun=All.
	DryRun bool
	// Watch: the request had watch=true (a GET that is a watch).
	Watch bool
	// FieldManager is the request's fieldManager parameter.
	FieldManager string
	// Status is the status code the client got.
	Status int
}

// Fault answers the next Times requests that Match selects with Status.
type Fault struct {
	Match  func(*http.Request) bool
	Status int
	Times  int
	// Hits counts the requests it answered.
	Hits int
}

// NewAPIProxy starts a proxy in front of e's API server, stopped when the test ends.
func (e *Env) NewAPIProxy(tb testing.TB) *APIProxy {
	tb.Helper()
	upstream, err := url.Parse(e.Config.Host)
	if err != nil {
		tb.Fatal(err)
	}
	transport, err := rest.TransportFor(e.Config)
	if err != nil {
		tb.Fatal(err)
	}
	p := &APIProxy{}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1 // watches stream
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := Request{Method: r.Method, Path: r.URL.Path, DryRun: r.URL.Query().Get("dryRun") == "All", Watch: r.URL.Query().Get("watch") == "true",
			FieldManager: r.URL.Query().Get("fieldManager")}
		if f := p.fault(r); f != nil {
			rec.Status = f.Status
			p.record(rec)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected by the test's API proxy: %s","code":%d}`,
				http.StatusText(f.Status), f.Status)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		rec.Status = sw.status
		p.record(rec)
	}))
	tb.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Inject adds a fault; it applies to requests made from now on.
func (p *APIProxy) Inject(f *Fault) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f)
	return f
}

// Remove takes a fault away: requests from now on pass.
func (p *APIProxy) Remove(f *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = slices.DeleteFunc(p.faults, func(x *Fault) bool { return x == f })
}

// FaultHits returns how many requests f answered.
func (p *APIProxy) FaultHits(f *Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f.Hits
}

func (p *APIProxy) fault(r *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.Hits < f.Times && f.Match(r) {
			f.Hits++
			return f
		}
	}
	return nil
}

func (p *APIProxy) record(r Request) {
	p.mu.Lock()
	p.requests = append(p.requests, r)
	p.mu.Unlock()
}

// Requests returns the requests so far that keep selects (all when keep is nil).
func (p *APIProxy) Requests(keep func(Request) bool) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Request
	for _, r := range p.requests {
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets the requests so far.
func (p *APIProxy) Reset() {
	p.mu.Lock()
	p.requests = nil
	p.mu.Unlock()
}

// Writes selects the requests that change something (dry runs aside).
func Writes(r Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return !r.DryRun && !strings.Contains(r.Path, "/selfsubjectaccessreviews") && !strings.Contains(r.Path, "/events")
	}
	return false
}

// Config reaches the API server through the proxy.
func (p *APIProxy) Config() *rest.Config {
	return &rest.Config{Host: p.URL, QPS: 500, Burst: 1000}
}

// KubeconfigFile writes a kubeconfig for the proxy, for commands that take --kubeconfig.
func (p *APIProxy) KubeconfigFile(tb testing.TB) string {
	tb.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxy"] = &clientcmdapi.Cluster{Server: p.URL}
	cfg.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	cfg.CurrentContext = "proxy"
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// DryRunPatch matches a server-side apply dry run of the object at path suffix (".../<resource>/<name>").
func DryRunPatch(suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodPatch && r.URL.Query().Get("dryRun") == "All" && strings.HasSuffix(r.URL.Path, suffix)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
