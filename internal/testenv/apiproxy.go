package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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
	// inflight cancels the requests on their way upstream (watches above all), for Cut.
	inflight map[*http.Request]context.CancelFunc
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
	// Status is the status code the client got; 0 when it got none (a hang-up, or the client gave
	// up on a delayed request).
	Status int
	// Name is the object's name: in the path, or in the body of a create ("" for a list).
	Name string
	// At is when the proxy took the request.
	At time.Time
}

// Fault answers the next Times requests that Match selects with Status; or, with Status 0,
// hangs up without an answer (Hangup: as a server that went away) or forwards them after Delay (a
// slow server; a client that gives up meanwhile sends nothing upstream).
type Fault struct {
	Match  func(*http.Request) bool
	Status int
	Times  int
	Hangup bool
	Delay  time.Duration
	// Hits counts the requests it answered.
	Hits int
}

// AllRequests matches every request.
func AllRequests(*http.Request) bool { return true }

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
	p := &APIProxy{inflight: map[*http.Request]context.CancelFunc{}}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1 // watches stream
	closed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := Request{Method: r.Method, Path: r.URL.Path, DryRun: r.URL.Query().Get("dryRun") == "All", Watch: r.URL.Query().Get("watch") == "true",
			FieldManager: r.URL.Query().Get("fieldManager"), Name: objectName(r.URL.Path), At: time.Now()}
		if r.Method == http.MethodPost && rec.Name == "" {
			// A create names its object in the body.
			body, err := io.ReadAll(r.Body)
			if err == nil {
				rec.Name = nameInBody(body)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		f := p.fault(r)
		switch {
		case f != nil && f.Hangup:
			p.record(rec)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		case f != nil && f.Status == 0:
			// Read the body first: only then does the server notice a client that goes away.
			body, err := io.ReadAll(r.Body)
			if err != nil {
				p.record(rec)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			select {
			case <-time.After(f.Delay):
				f = nil
			case <-r.Context().Done():
				p.record(rec) // the client gave up: nothing reaches the API server
				return
			case <-closed:
				p.record(rec)
				return
			}
		}
		if f != nil {
			rec.Status = f.Status
			p.record(rec)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected by the test's API proxy: %s","code":%d}`,
				http.StatusText(f.Status), f.Status)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		p.mu.Lock()
		p.inflight[r] = cancel
		p.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if !rec.Watch {
			// Recorded before the client has the answer: a test that reads Requests once its
			// call returned finds it there. A watch is recorded when it ends.
			sw.answered = func(status int) {
				rec.Status = status
				p.record(rec)
			}
		}
		rp.ServeHTTP(sw, r.WithContext(ctx))
		p.mu.Lock()
		delete(p.inflight, r)
		p.mu.Unlock()
		cancel()
		if sw.answered == nil || !sw.wrote {
			rec.Status = sw.status
			p.record(rec)
		}
	}))
	tb.Cleanup(func() {
		close(closed) // delayed requests end with the proxy
		srv.CloseClientConnections()
		srv.Close()
	})
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

// Cut ends every request on its way through the proxy, watches included, as an API server that
// restarts drops its connections.
func (p *APIProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cancel := range p.inflight {
		cancel()
	}
}

// Open returns the requests on their way through the proxy now — watches above all, which a
// client keeps open for as long as it runs and Requests lists only once they end.
func (p *APIProxy) Open() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, 0, len(p.inflight))
	for r := range p.inflight {
		out = append(out, Request{Method: r.Method, Path: r.URL.Path, Watch: r.URL.Query().Get("watch") == "true", Name: objectName(r.URL.Path)})
	}
	return out
}

// Watching reports whether a watch whose path ends in suffix (".../machinedeployments") is open
// through the proxy now: after a Cut, whether the client has re-established it.
func (p *APIProxy) Watching(suffix string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r := range p.inflight {
		if r.URL.Query().Get("watch") == "true" && strings.HasSuffix(r.URL.Path, suffix) {
			return true
		}
	}
	return false
}

// nameInBody is the name of the object a create sends: in protobuf (client-go's choice for
// built-in kinds) or JSON.
func nameInBody(body []byte) string {
	if obj, _, err := clientgoscheme.Codecs.UniversalDeserializer().Decode(body, nil, nil); err == nil {
		if m, err := meta.Accessor(obj); err == nil {
			return m.GetName()
		}
	}
	var o struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(body, &o)
	return o.Metadata.Name
}

// objectName is the name a request's path ends in when it names one object:
// /api/v1/namespaces/ns/configmaps/name, /apis/g/v/namespaces/ns/kind/name[/status].
func objectName(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return ""
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if len(parts) == 2 {
			return parts[1] // the Namespace itself
		}
		parts = parts[2:]
	}
	if len(parts) >= 2 {
		return parts[1]
	}
	return ""
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
		return Patch(suffix)(r) && r.URL.Query().Get("dryRun") == "All"
	}
}

// Patch matches every PATCH of a path ending in suffix, dry run or not: the first request that
// checks a missing object is its creation, an existing one's is its dry run.
func Patch(suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, suffix)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	// answered, when set, is called once with the status before it goes to the client.
	answered func(status int)
	wrote    bool
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	if w.answered != nil && !w.wrote {
		w.answered(code)
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
