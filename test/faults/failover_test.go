package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
	"github.com/driftd/driftd/internal/testenv/image"
)

// TestTheLeaderKilledTheStandbyTakesOver: two replicas with leader election, as config/ deploys
// them, each reaching the API server through a proxy of its own. The leader is killed with
// SIGKILL (no lease released); the standby takes over within the lease and corrects an edit made
// meanwhile, from the render it kept of the head while it stood by (it renders nothing when it
// takes over). While it stood by it wrote nothing but its attempts at the lease.
func TestTheLeaderKilledTheStandbyTakesOver(t *testing.T) {
	ns := "fault-failover"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	bin := image.Binary(t)
	replica := func(proxy *testenv.APIProxy) *driver.Process {
		args := daemonArgs(t, ns, repo, proxy, "--leader-elect", "--interval", "1h", "--health-probe-bind-address", "0")
		for i, a := range args {
			if a == "--git-cache-dir" {
				args[i+1] = t.TempDir() // each pod its own emptyDir
			}
		}
		return driver.Spawn(t, bin, args...)
	}
	leaderProxy, standbyProxy := env.NewAPIProxy(t), env.NewAPIProxy(t)
	leader := replica(leaderProxy)
	testenv.Eventually(t, 90*time.Second, "the leader's first complete cycle", func() bool { return cycleDone(leader) })
	standby := replica(standbyProxy)
	testenv.Eventually(t, 30*time.Second, "the standby asking for the lease", func() bool {
		return len(standbyProxy.Requests(func(r testenv.Request) bool { return strings.Contains(r.Path, "/leases/") })) > 0
	})
	// A lease duration (35 s) after it started without being elected, it keeps the head's render.
	testenv.Eventually(t, 90*time.Second, "the standby keeping the render of the head", func() bool {
		return strings.Contains(standby.Out.String(), "Kept the render of the head for a takeover")
	})
	if cycleDone(standby) {
		t.Fatal("the standby ran a cycle beside a live leader")
	}

	leader.Kill()
	killed := time.Now()
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 60*time.Second, "the standby to correct the edit", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	t.Logf("the edit corrected %s after the leader was killed (lease 35 s)", time.Since(killed).Round(time.Second))
	if !strings.Contains(standby.Out.String(), "Took the render kept of this commit") {
		t.Errorf("the new leader rendered the head again instead of taking the render it kept:\n%s", standby.Out.String())
	}

	t.Logf("writes of the standby:\n  %s", strings.Join(writes(standbyProxy), "\n  "))
	var took time.Time
	for _, r := range standbyProxy.Requests(testenv.Writes) {
		if r.Status != 0 && strings.Contains(r.Path, "/leases/") && took.IsZero() && r.Method == "PUT" {
			took = r.At // the lease taken over
		}
	}
	if took.IsZero() {
		t.Fatal("the standby never wrote the lease")
	}
	for _, r := range standbyProxy.Requests(testenv.Writes) {
		if r.Status != 0 && r.At.Before(took) && !strings.Contains(r.Path, "/leases/") {
			t.Errorf("the standby wrote while standing by: %s %s", r.Method, r.Path)
		}
	}
	t.Logf("the standby took the lease %s after the kill", took.Sub(killed).Round(time.Second))
	if bad := unintended(standbyProxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes of the new leader: %v", bad)
	}
}
