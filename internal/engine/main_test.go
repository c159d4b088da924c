// Tests of the engine's per-object path and cycle, directly against the test bed's API server.
package engine

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/source"
	"github.com/driftd/driftd/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { env = e })
}

// dirSource is the engine's Fetcher over a folder the test writes: each Set is a new commit. Block
// makes the next fetches hang until Unblock, as a remote that accepts and never answers.
type dirSource struct {
	dir string

	mu      sync.Mutex
	commit  string
	blocked chan struct{}
	waiting int
}

func newDirSource(tb testing.TB, files map[string]string) *dirSource {
	s := &dirSource{dir: tb.TempDir()}
	s.Set(tb, files)
	return s
}

// Set replaces the folder's files.
func (s *dirSource) Set(tb testing.TB, files map[string]string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.RemoveAll(s.dir); err != nil {
		tb.Fatal(err)
	}
	h := sha1.New()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(s.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(files[name]), 0o644); err != nil {
			tb.Fatal(err)
		}
		h.Write([]byte(name + "\x00" + files[name] + "\x00"))
	}
	s.commit = hex.EncodeToString(h.Sum(nil))
}

func (s *dirSource) Block() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked = make(chan struct{})
}

func (s *dirSource) Unblock() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked != nil {
		close(s.blocked)
		s.blocked = nil
	}
}

func (s *dirSource) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

func (s *dirSource) Fetch(ctx context.Context) (*source.Checkout, error) {
	s.mu.Lock()
	blocked := s.blocked
	if blocked != nil {
		s.waiting++
	}
	s.mu.Unlock()
	if blocked != nil {
		select {
		case <-blocked:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &source.Checkout{Dir: s.dir, Ref: "main", Commit: s.commit}, nil
}

// newEngine is an engine over src reading and writing through c (the API, as `plan` does).
func newEngine(tb testing.TB, src Fetcher, c client.Client, opts Options) *Engine {
	tb.Helper()
	if opts.Owner == "" {
		// A label value of the test's own: tests sharing the API server never see each other's
		// objects as orphans.
		h := sha1.Sum([]byte(tb.Name()))
		opts.Owner = "t-" + hex.EncodeToString(h[:8])
	}
	if opts.Policy.Mode == "" {
		opts.Policy.Mode = diff.ModeCorrect
	}
	return New(opts, Deps{Source: src, Reader: c, Client: c, Mapper: c.RESTMapper()})
}

func proxyClient(tb testing.TB, p *testenv.APIProxy) client.Client {
	tb.Helper()
	c, err := client.New(p.Config(), client.Options{Scheme: env.Scheme})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// createNamespace renders e's source and creates the Namespace ns alone, as a cycle's first stage
// does, so that a test's faults meet only the objects in it.
func createNamespace(tb testing.TB, e *Engine, ns string) {
	tb.Helper()
	ctx := context.Background()
	s, _, err := e.refresh(ctx, ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if out := e.reconcileKey(ctx, s, diff.Key{Kind: "Namespace", Name: ns}, true); out.err != nil {
		tb.Fatal(out.err)
	}
}
