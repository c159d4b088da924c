package faults

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// cloudGate is a proxy in front of moto, as AWS's endpoint, that holds DescribeInstances while
// closed: a cloud cycle caught in the middle.
type cloudGate struct {
	mu     sync.Mutex
	closed chan struct{} // nil: open
	held   int
}

func newCloudGate(t *testing.T) *cloudGate {
	t.Helper()
	moto, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	g := &cloudGate{}
	rp := httputil.NewSingleHostReverseProxy(moto)
	rp.Transport = testenv.HTTP.Transport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		g.mu.Lock()
		wait := g.closed
		if wait != nil && bytes.Contains(body, []byte("Action=DescribeInstances&")) {
			g.held++
		} else {
			wait = nil
		}
		g.mu.Unlock()
		if wait != nil {
			select {
			case <-wait:
			case <-r.Context().Done():
				return // its client was killed
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.open(); srv.CloseClientConnections(); srv.Close() })
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	return g
}

func (g *cloudGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

func (g *cloudGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

func (g *cloudGate) holding() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// TestTheLeaderKilledDuringACloudCycle: two replicas with leader election; two of eight instances
// of a pool are gone, and the leader is killed with SIGKILL while its cloud cycle reads the
// inventory. The standby takes over, judges the cloud itself and marks one Machine for its
// MachineHealthCheck — the budget is one per pool — never two, and it wrote nothing while it stood
// by.
func TestTheLeaderKilledDuringACloudCycle(t *testing.T) {
	ctx := context.Background()
	ns := "fault-cloud-failover"
	ec2c, ids := eightMachines(t, ns)
	gate := newCloudGate(t)
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	leaderProxy, standbyProxy := env.NewAPIProxy(t), env.NewAPIProxy(t)
	args := func(p *testenv.APIProxy) []string {
		return daemonArgs(t, ns, repo, p, "--leader-elect", "--provider", "aws", "--cloud-interval", "1s", "--interval", "1h",
			"--health-probe-bind-address", "0")
	}
	leader := spawnImage(t, args(leaderProxy)...)
	testenv.Eventually(t, 90*time.Second, "the leader's first complete cycle and a cloud cycle", func() bool {
		return cycleDone(leader) && strings.Contains(leader.Out.String(), "Cloud cycle done")
	})
	standby := spawnImage(t, args(standbyProxy)...)
	testenv.Eventually(t, 30*time.Second, "the standby asking for the lease", func() bool {
		return len(standbyProxy.Requests(func(r testenv.Request) bool { return strings.Contains(r.Path, "/leases/") })) > 0
	})

	if _, err := ec2c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["prod-md-0-m1"], ids["prod-md-0-m2"]}}); err != nil {
		t.Fatal(err)
	}
	gate.close()
	testenv.Eventually(t, 30*time.Second, "the leader's cloud cycle reading the inventory", func() bool { return gate.holding() > 0 })
	leader.Kill()
	killed := time.Now()
	gate.open()

	marked := func() []string { return markedForReplacement(t, ns, "prod-md-0-m1", "prod-md-0-m2") }
	testenv.Eventually(t, 90*time.Second, "the standby to mark a Machine", func() bool { return len(marked()) > 0 })
	t.Logf("a Machine marked %s after the leader was killed", time.Since(killed).Round(time.Second))
	testenv.Eventually(t, 30*time.Second, "three cloud cycles of the new leader", func() bool {
		return strings.Count(standby.Out.String(), "Cloud cycle done") >= 3
	})
	if got := marked(); len(got) != 1 {
		t.Errorf("marked: %v, want one: the pool's budget is one", got)
	}
	for _, r := range leaderProxy.Requests(testenv.Writes) {
		if r.Status != 0 && r.At.After(killed) {
			t.Errorf("the killed leader wrote after its kill: %s %s", r.Method, r.Path)
		}
	}
	t.Logf("writes of the standby:\n  %s", strings.Join(writes(standbyProxy), "\n  "))
	var took time.Time
	for _, r := range standbyProxy.Requests(testenv.Writes) {
		if r.Status != 0 && strings.Contains(r.Path, "/leases/") && r.Method == http.MethodPut && took.IsZero() {
			took = r.At
		}
	}
	for _, r := range standbyProxy.Requests(testenv.Writes) {
		if r.Status != 0 && (took.IsZero() || r.At.Before(took)) && !strings.Contains(r.Path, "/leases/") {
			t.Errorf("the standby wrote while standing by: %s %s", r.Method, r.Path)
		}
	}
	machines := func(r testenv.Request) bool {
		return strings.Contains(r.Path, "/machines/") && r.Method == http.MethodPatch
	}
	if bad := unintended(standbyProxy, bookkeeping(system(ns)), machines); len(bad) > 0 {
		t.Errorf("unintended writes of the new leader: %v", bad)
	}
}
