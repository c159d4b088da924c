package bench

import (
	"cmp"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// benchFleet is a generated fleet in a git repository, applied to the test bed as driftd would have.
type benchFleet struct {
	ns      string
	owner   string
	repo    *testenv.GitRepo
	objects []*unstructured.Unstructured
}

// newFleet writes a fleet of n clusters into namespace ns, one folder per cluster, and applies it
// (tracked as driftd tracks what it applies) so the test starts from a fleet in sync with Git.
func newFleet(tb testing.TB, ns string, n int) *benchFleet {
	tb.Helper()
	files, all := fleet.Generated(ns, n)
	objs, err := testenv.DecodeObjects([]byte(all))
	if err != nil {
		tb.Fatal(err)
	}
	f := &benchFleet{ns: ns, owner: ns, repo: testenv.NewGitRepo(tb, files), objects: objs}
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	f.apply(tb)
	return f
}

// apply server-side applies every object as driftd does, from a few workers.
func (f *benchFleet) apply(tb testing.TB) {
	tb.Helper()
	work := make(chan *unstructured.Unstructured)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for obj := range work {
				o := obj.DeepCopy()
				o.SetNamespace(f.ns)
				diff.Track(o, f.owner)
				if err := env.Client.Patch(context.Background(), o, client.Apply, client.FieldOwner("driftd"), client.ForceOwnership); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, o := range f.objects {
		work <- o
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		tb.Fatalf("applying the fleet: %v", err)
	}
}

// fleetSize is the first size of BENCH_CLUSTERS, or def.
func fleetSize(def int) int {
	if s := fleetSizes(); len(s) > 0 {
		return s[0]
	}
	return def
}

// fleetSizes are the sizes BENCH_CLUSTERS lists, comma-separated (1000 when it is not set).
func fleetSizes() []int {
	var out []int
	for _, f := range strings.Split(cmp.Or(os.Getenv("BENCH_CLUSTERS"), "1000"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// requestCounter counts the HTTP requests a rest.Config sends, and among them the dry runs.
type requestCounter struct{ n, dryRuns atomic.Int64 }

func (c *requestCounter) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			c.n.Add(1)
			if req.URL.Query().Get("dryRun") == "All" {
				c.dryRuns.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
