package endpoint

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	inventoryv1 "github.com/driftd/driftd/api/inventory/v1"
	"github.com/driftd/driftd/internal/infra"
)

// endpoint is an inventory endpoint on loopback that answers with pages, recording requests.
type endpoint struct {
	t     *testing.T
	mu    sync.Mutex
	pages map[string]inventoryv1.SnapshotResponse // by page token
	reqs  []inventoryv1.SnapshotRequest
	auth  []string
	code  int
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != inventoryv1.SnapshotPath {
		http.NotFound(w, r)
		return
	}
	var req inventoryv1.SnapshotRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		e.t.Errorf("request body: %v", err)
	}
	e.reqs = append(e.reqs, req)
	e.auth = append(e.auth, r.Header.Get("Authorization"))
	if e.code != 0 {
		w.WriteHeader(e.code)
		_ = json.NewEncoder(w).Encode(inventoryv1.Status{APIVersion: inventoryv1.APIVersion, Message: "backend cloud API throttled"})
		return
	}
	page, ok := e.pages[req.PageToken]
	if !ok {
		http.Error(w, "unknown page token", http.StatusBadRequest)
		return
	}
	page.APIVersion = inventoryv1.APIVersion
	_ = json.NewEncoder(w).Encode(page)
}

var (
	dev1    = inventoryv1.ClusterRef{Namespace: "fleet", Name: "dev1"}
	dev2    = inventoryv1.ClusterRef{Namespace: "fleet", Name: "dev2"}
	targets = []infra.Cluster{
		{Namespace: "fleet", Name: "dev1", InfrastructureGroup: "infrastructure.cluster.x-k8s.io", InfrastructureKind: "DevCluster", InfrastructureName: "dev1"},
		{Namespace: "fleet", Name: "dev2"},
	}
	launched = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
)

func inst(c inventoryv1.ClusterRef, id, state string) inventoryv1.Instance {
	return inventoryv1.Instance{ProviderID: "in-memory://" + id, Cluster: c, State: state, Name: id, LaunchTime: &launched, Type: "small"}
}

func serve(t *testing.T, e *endpoint) *httptest.Server {
	t.Helper()
	e.t = t
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func newProvider(t *testing.T, opts Options) *Provider {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "in-memory"
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tokenFile(t *testing.T, token string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSnapshotReadsEveryPage(t *testing.T) {
	e := &endpoint{pages: map[string]inventoryv1.SnapshotResponse{
		"":   {Instances: []inventoryv1.Instance{inst(dev1, "dev1-cp-1", "running"), inst(dev1, "dev1-md-1", "running")}, NextPageToken: "p2"},
		"p2": {Instances: []inventoryv1.Instance{inst(dev1, "dev1-md-1", "running"), inst(dev2, "dev2-md-1", "stopped")}, NextPageToken: "p3"},
		"p3": {Instances: []inventoryv1.Instance{inst(inventoryv1.ClusterRef{Namespace: "other", Name: "x"}, "x-1", "running")},
			Pools:    []inventoryv1.NodePool{{Name: "dev2-pool", Cluster: dev2, Desired: 2, Min: 1, Max: 3, Members: []string{"in-memory://dev2-md-1"}}},
			Complete: true},
	}}
	srv := serve(t, e)
	p := newProvider(t, Options{URL: srv.URL + "/", TokenFile: tokenFile(t, "s3cret")})
	snap, err := p.Snapshot(context.Background(), targets)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Complete || len(snap.Unavailable) != 0 {
		t.Fatalf("complete %v, unavailable %v; want a complete answer", snap.Complete, snap.Unavailable)
	}
	var got []string
	for _, i := range snap.Instances {
		got = append(got, i.Provider+"/"+i.ID+"@"+i.Cluster+"="+i.State)
	}
	want := "in-memory/dev1-cp-1@fleet/dev1=running in-memory/dev1-md-1@fleet/dev1=running in-memory/dev2-md-1@fleet/dev2=stopped"
	if strings.Join(got, " ") != want {
		t.Errorf("instances %v; want %s (the overlap listed once, the cluster not asked about left out)", got, want)
	}
	if i := snap.Instances[0]; !i.LaunchTime.Equal(launched) || i.Type != "small" || i.ProviderID != "in-memory://dev1-cp-1" {
		t.Errorf("instance %+v lost what the endpoint said", i)
	}
	if len(snap.Pools) != 1 || snap.Pools[0].Cluster != "fleet/dev2" || snap.Pools[0].Desired != 2 || snap.Pools[0].Max != 3 {
		t.Errorf("pools %+v", snap.Pools)
	}
	if snap.Calls["snapshot"] != 3 {
		t.Errorf("calls %v; want 3 pages", snap.Calls)
	}
	if len(e.reqs) != 3 || e.reqs[1].PageToken != "p2" || e.reqs[2].PageToken != "p3" {
		t.Fatalf("requests %+v", e.reqs)
	}
	r := e.reqs[0]
	if r.APIVersion != inventoryv1.APIVersion || len(r.Clusters) != 2 || r.Clusters[0].ClusterRef != dev1 ||
		r.Clusters[0].InfrastructureRef == nil || r.Clusters[0].InfrastructureRef.Kind != "DevCluster" || r.Clusters[1].InfrastructureRef != nil {
		t.Errorf("first request %+v", r)
	}
	for _, a := range e.auth {
		if a != "Bearer s3cret" {
			t.Errorf("Authorization %q; want the token file's token", a)
		}
	}
}

func TestSnapshotDoubtsTheAnswer(t *testing.T) {
	tests := []struct {
		name        string
		pages       map[string]inventoryv1.SnapshotResponse
		code        int
		err         string   // the whole answer is refused with this
		unavailable []string // else these clusters, and only these, are unavailable
	}{{
		name: "the last page is not complete",
		pages: map[string]inventoryv1.SnapshotResponse{
			"":  {Instances: []inventoryv1.Instance{inst(dev1, "a", "running")}, NextPageToken: "2"},
			"2": {Instances: []inventoryv1.Instance{inst(dev2, "b", "running")}}},
		err: "does not say it is complete",
	}, {
		name:  "an error status",
		code:  http.StatusServiceUnavailable,
		pages: map[string]inventoryv1.SnapshotResponse{},
		err:   "503 Service Unavailable: backend cloud API throttled",
	}, {
		name: "a page that is lost",
		pages: map[string]inventoryv1.SnapshotResponse{
			"": {Instances: []inventoryv1.Instance{inst(dev1, "a", "running")}, NextPageToken: "gone"}},
		err: "page 2: 400 Bad Request: unknown page token",
	}, {
		name: "pages in a loop",
		pages: map[string]inventoryv1.SnapshotResponse{
			"": {NextPageToken: "a"}, "a": {NextPageToken: "b"}, "b": {NextPageToken: "a"}},
		err: "already given",
	}, {
		name: "a cluster the endpoint cannot read",
		pages: map[string]inventoryv1.SnapshotResponse{"": {
			Instances:   []inventoryv1.Instance{inst(dev1, "a", "running")},
			Unavailable: []inventoryv1.UnavailableCluster{{Cluster: dev2, Reason: "region eu-2 does not answer"}}, Complete: true}},
		unavailable: []string{"fleet/dev2"},
	}, {
		name: "a state driftd does not know",
		pages: map[string]inventoryv1.SnapshotResponse{"": {
			Instances: []inventoryv1.Instance{inst(dev1, "a", "running"), inst(dev2, "b", "hibernating")}, Complete: true}},
		unavailable: []string{"fleet/dev2"},
	}, {
		name: "another provider's providerID",
		pages: map[string]inventoryv1.SnapshotResponse{"": {
			Instances: []inventoryv1.Instance{{ProviderID: "aws:///eu-west-1a/i-0123456789abcdef0", Cluster: dev1, State: "running"}, inst(dev2, "b", "running")}, Complete: true}},
		unavailable: []string{"fleet/dev1"},
	}, {
		name: "an instance listed twice with two states",
		pages: map[string]inventoryv1.SnapshotResponse{
			"":  {Instances: []inventoryv1.Instance{inst(dev1, "a", "running")}, NextPageToken: "2"},
			"2": {Instances: []inventoryv1.Instance{inst(dev1, "a", "terminated"), inst(dev2, "b", "running")}, Complete: true}},
		unavailable: []string{"fleet/dev1"},
	}, {
		name: "every cluster unavailable",
		pages: map[string]inventoryv1.SnapshotResponse{"": {Unavailable: []inventoryv1.UnavailableCluster{
			{Cluster: dev1, Reason: "down"}, {Cluster: dev2, Reason: "down"}}, Complete: true}},
		err: "the endpoint cannot read cluster fleet/dev1: down",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, &endpoint{pages: tt.pages, code: tt.code})
			p := newProvider(t, Options{URL: srv.URL, MaxPages: 10})
			snap, err := p.Snapshot(context.Background(), targets)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "inventory endpoint in-memory") {
					t.Fatalf("error %v; want one naming the endpoint and %q", err, tt.err)
				}
				if snap == nil || snap.Complete || len(snap.Unavailable) != len(targets) {
					t.Fatalf("snapshot %+v; want every cluster unavailable", snap)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for k := range snap.Unavailable {
				got = append(got, k)
			}
			if strings.Join(got, ",") != strings.Join(tt.unavailable, ",") {
				t.Errorf("unavailable %v; want %v (%v)", got, tt.unavailable, snap.Errors)
			}
			for _, i := range snap.Instances {
				if _, bad := snap.Unavailable[i.Cluster]; !bad && i.Cluster != "fleet/dev1" && i.Cluster != "fleet/dev2" {
					t.Errorf("instance %+v", i)
				}
			}
		})
	}
}

func TestSnapshotTrustsOnlyTheCAFile(t *testing.T) {
	e := &endpoint{t: t, pages: map[string]inventoryv1.SnapshotResponse{"": {Complete: true}}}
	srv := httptest.NewTLSServer(e)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, Options{URL: srv.URL, CAFile: ca})
	if _, err := p.Snapshot(context.Background(), targets); err != nil {
		t.Fatalf("with the endpoint's CA: %v", err)
	}
	p = newProvider(t, Options{URL: srv.URL})
	if _, err := p.Snapshot(context.Background(), targets); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without it: %v; want a certificate error", err)
	}
}

func TestSnapshotReadsTheTokenEachTime(t *testing.T) {
	e := &endpoint{pages: map[string]inventoryv1.SnapshotResponse{"": {Complete: true}}}
	srv := serve(t, e)
	f := tokenFile(t, "first")
	p := newProvider(t, Options{URL: srv.URL, TokenFile: f})
	if _, err := p.Snapshot(context.Background(), targets); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot(context.Background(), targets); err != nil {
		t.Fatal(err)
	}
	if strings.Join(e.auth, ",") != "Bearer first,Bearer rotated" {
		t.Errorf("Authorization headers %v", e.auth)
	}
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot(context.Background(), targets); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty token file: %v", err)
	}
	if len(e.reqs) != 2 {
		t.Errorf("%d requests; an empty token must send none", len(e.reqs))
	}
}

func TestSnapshotFollowsNoRedirectAndTimesOut(t *testing.T) {
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere++ }))
	t.Cleanup(other.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+inventoryv1.SnapshotPath, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	p := newProvider(t, Options{URL: redirect.URL, TokenFile: tokenFile(t, "s3cret")})
	if _, err := p.Snapshot(context.Background(), targets); err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("a redirect: %v; want it refused", err)
	}
	if elsewhere != 0 {
		t.Errorf("the token followed a redirect to another server")
	}

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	p = newProvider(t, Options{URL: slow.URL, Timeout: 200 * time.Millisecond})
	if snap, err := p.Snapshot(context.Background(), targets); err == nil || snap.Complete {
		t.Errorf("a hung endpoint: %v; want a timeout", err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		err  string
	}{
		{Options{Name: "aws", URL: "https://inventory.example"}, "not aws or vsphere"},
		{Options{Name: "In_House", URL: "https://inventory.example"}, "scheme"},
		{Options{Name: "acme", URL: "http://inventory.example"}, "plain http to a host that is not loopback"},
		{Options{Name: "acme", URL: "ftp://inventory.example"}, "must be https://"},
		{Options{Name: "acme", URL: "inventory.example"}, "not an absolute URL"},
		{Options{Name: "acme", URL: "https://inventory.example", CAFile: "/nonexistent/ca.pem"}, "caFile"},
	} {
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("New(%+v) = %v; want %q", tt.opts, err, tt.err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000", "https://inventory.example"} {
		if _, err := New(Options{Name: "acme", URL: u}); err != nil {
			t.Errorf("New(%s): %v", u, err)
		}
	}
}
