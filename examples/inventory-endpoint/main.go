// Command inventory-endpoint is a reference inventory endpoint (inventory.driftd.io/v1,
// docs/inventory.md) for an infrastructure provider driftd has no built-in reader for. It serves
// the instances and node pools of a JSON file; a provider team replaces fileBackend with calls to
// its own cloud's API and keeps the rest: authentication, paging over one view per snapshot, and
// errors driftd understands.
//
//	inventory-endpoint --inventory inventory.json --token-file token \
//	    --tls-cert tls.crt --tls-key tls.key --listen :9470
package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	inventoryv1 "github.com/driftd/driftd/api/inventory/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9470", "address to serve on")
	file := flag.String("inventory", "inventory.json", "JSON file of instances and pools (the format of a snapshot response)")
	tokenFile := flag.String("token-file", "", "file holding the bearer token driftd must send (empty: no authentication, loopback only)")
	cert := flag.String("tls-cert", "", "TLS certificate (PEM); with --tls-key serves HTTPS")
	key := flag.String("tls-key", "", "TLS private key (PEM)")
	pageSize := flag.Int("page-size", 500, "instances per page")
	flag.Parse()

	if *tokenFile == "" && !strings.HasPrefix(*listen, "127.0.0.1:") && !strings.HasPrefix(*listen, "localhost:") {
		log.Fatal("--token-file is required unless --listen is a loopback address")
	}
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second,
		Handler: NewServer(fileBackend{path: *file}, *tokenFile, *pageSize)}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("serving %s on %s", inventoryv1.APIVersion, *listen)
	var err error
	if *cert != "" {
		err = srv.ListenAndServeTLS(*cert, *key)
	} else {
		err = srv.ListenAndServe()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// Backend is what a provider team writes: every instance and node pool of the clusters, in any
// state, read from its cloud. A cluster it cannot read completely goes into Unavailable, never
// into an answer with instances missing; an error fails the whole snapshot.
type Backend interface {
	List(ctx context.Context, clusters []inventoryv1.RequestedCluster) (*Listing, error)
}

// Listing is one consistent view of the inventory.
type Listing struct {
	Instances   []inventoryv1.Instance
	Pools       []inventoryv1.NodePool
	Unavailable []inventoryv1.UnavailableCluster
}

// fileBackend reads the inventory from a JSON file, at every snapshot.
type fileBackend struct{ path string }

func (b fileBackend) List(_ context.Context, clusters []inventoryv1.RequestedCluster) (*Listing, error) {
	data, err := os.ReadFile(b.path)
	if err != nil {
		return nil, err
	}
	var all inventoryv1.SnapshotResponse
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	asked := map[inventoryv1.ClusterRef]bool{}
	for _, c := range clusters {
		asked[c.ClusterRef] = true
	}
	out := &Listing{}
	for _, i := range all.Instances {
		if asked[i.Cluster] {
			out.Instances = append(out.Instances, i)
		}
	}
	for _, p := range all.Pools {
		if asked[p.Cluster] {
			out.Pools = append(out.Pools, p)
		}
	}
	return out, nil
}

// Server answers snapshot requests from a Backend. The first page of a snapshot takes one view
// from the backend and later pages are cut from that view, so an instance created or deleted
// while driftd pages neither shows twice nor goes missing.
type Server struct {
	backend   Backend
	tokenFile string
	pageSize  int
	ttl       time.Duration

	mu    sync.Mutex
	views map[string]*view
}

type view struct {
	listing *Listing
	expires time.Time
}

// NewServer returns a Server; tokenFile "" accepts every request.
func NewServer(b Backend, tokenFile string, pageSize int) *Server {
	return &Server{backend: b, tokenFile: tokenFile, pageSize: max(pageSize, 1), ttl: 5 * time.Minute, views: map[string]*view{}}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz" && r.Method == http.MethodGet:
		_, _ = w.Write([]byte("ok"))
	case r.URL.Path == inventoryv1.SnapshotPath && r.Method == http.MethodPost:
		s.snapshot(w, r)
	default:
		fail(w, http.StatusNotFound, "POST "+inventoryv1.SnapshotPath+" is the only call")
	}
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.authenticate(r); err != nil {
		fail(w, http.StatusUnauthorized, err.Error())
		return
	}
	var req inventoryv1.SnapshotRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "the body is not a snapshot request: "+err.Error())
		return
	}
	if req.APIVersion != inventoryv1.APIVersion {
		fail(w, http.StatusBadRequest, fmt.Sprintf("apiVersion %q is not %s", req.APIVersion, inventoryv1.APIVersion))
		return
	}
	id, offset := "", 0
	if req.PageToken == "" {
		listing, err := s.backend.List(r.Context(), req.Clusters)
		if err != nil {
			fail(w, http.StatusServiceUnavailable, "reading the inventory: "+err.Error())
			return
		}
		id = s.keep(listing)
	} else {
		var ok bool
		if id, offset, ok = parseToken(req.PageToken); !ok {
			fail(w, http.StatusBadRequest, "malformed page token")
			return
		}
	}
	s.mu.Lock()
	v := s.views[id]
	s.mu.Unlock()
	if v == nil {
		fail(w, http.StatusGone, "the snapshot this page belongs to has expired; start again")
		return
	}
	l := v.listing
	end := min(offset+s.pageSize, len(l.Instances))
	resp := inventoryv1.SnapshotResponse{APIVersion: inventoryv1.APIVersion, Instances: l.Instances[min(offset, end):end]}
	if resp.Instances == nil {
		resp.Instances = []inventoryv1.Instance{}
	}
	if end < len(l.Instances) {
		resp.NextPageToken = id + ":" + strconv.Itoa(end)
	} else {
		// The last page carries the pools and the verdict; the view is no longer needed.
		resp.Pools, resp.Unavailable, resp.Complete = l.Pools, l.Unavailable, true
		s.mu.Lock()
		delete(s.views, id)
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) authenticate(r *http.Request) error {
	if s.tokenFile == "" {
		return nil
	}
	want, err := os.ReadFile(s.tokenFile) // re-read: a rotated token is accepted at once
	if err != nil || len(strings.TrimSpace(string(want))) == 0 {
		return errors.New("the endpoint has no token to check against")
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(strings.TrimSpace(string(want)))) != 1 {
		return errors.New("a valid bearer token is required")
	}
	return nil
}

// keep stores a view for later pages and forgets expired ones.
func (s *Server) keep(l *Listing) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.views {
		if now.After(v.expires) {
			delete(s.views, k)
		}
	}
	s.views[id] = &view{listing: l, expires: now.Add(s.ttl)}
	return id
}

func parseToken(t string) (string, int, bool) {
	id, off, ok := strings.Cut(t, ":")
	n, err := strconv.Atoi(off)
	return id, n, ok && err == nil && n >= 0
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(inventoryv1.Status{APIVersion: inventoryv1.APIVersion, Message: msg})
}
