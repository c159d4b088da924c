package faults

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
	"github.com/driftd/driftd/internal/testenv/image"
)

// applyOf selects the writes (dry runs aside) of the MachineDeployment name in ns.
func applyOf(ns, name string) func(testenv.Request) bool {
	return func(r testenv.Request) bool {
		return r.Method == http.MethodPatch && r.Name == name &&
			strings.HasPrefix(r.Path, "/apis/cluster.x-k8s.io/v1beta2/namespaces/"+ns+"/machinedeployments/")
	}
}

// ready asks driftd's readiness probe at addr.
func ready(addr string) bool {
	resp, err := testenv.HTTP.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// edited starts driftd as deployed (--leader-elect) over the AWS fleet of ns through a new API
// proxy, waits for its first complete cycle, and returns it with the proxy (its log reset), the
// readiness address and what it needs to be started again.
type deployed struct {
	proc  *driver.Process
	proxy *testenv.APIProxy
	probe string
	args  []string
	bin   string
}

func startDeployed(t *testing.T, ns, interval string) *deployed {
	t.Helper()
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	d := &deployed{proxy: env.NewAPIProxy(t), probe: testenv.FreeAddr(t), bin: image.Binary(t)}
	d.args = daemonArgs(t, ns, repo, d.proxy, "--leader-elect", "--interval", interval, "--health-probe-bind-address", d.probe)
	d.proc = driver.Spawn(t, d.bin, d.args...)
	testenv.Eventually(t, 90*time.Second, "the first complete cycle", func() bool { return cycleDone(d.proc) })
	testenv.Eventually(t, 10*time.Second, "readiness", func() bool { return ready(d.probe) })
	d.proxy.Reset()
	return d
}

// TestTheAPIServerGoneForAMinute: every request driftd makes is hung up on for a minute, its
// watches cut, while a MachineDeployment is edited behind its back. driftd writes nothing that
// reaches the server, stops being ready (or, having lost its lease, exits for the kubelet to start
// it again), and once the server is back corrects the edit and writes nothing else.
func TestTheAPIServerGoneForAMinute(t *testing.T) {
	ns := "fault-apiserver-gone"
	d := startDeployed(t, ns, "2s")
	outage := d.proxy.Inject(&testenv.Fault{Match: testenv.AllRequests, Hangup: true, Times: 1 << 30})
	d.proxy.Cut()
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	start := time.Now()
	// The leader tries to renew its lease for 30 s (--leader-election-renew-deadline) before it
	// gives up and exits.
	testenv.Eventually(t, 60*time.Second, "driftd unready or gone", func() bool { return d.proc.Exited() || !ready(d.probe) })
	t.Logf("unready after %s (exited: %v)", time.Since(start).Round(time.Second), d.proc.Exited())
	hits := d.proxy.FaultHits(outage)
	testenv.Eventually(t, 2*time.Minute, "a minute of outage, driftd trying or gone", func() bool {
		return time.Since(start) >= time.Minute && (d.proc.Exited() || d.proxy.FaultHits(outage) > hits)
	})
	if d.proxy.FaultHits(outage) == 0 {
		t.Fatal("driftd sent nothing during the outage; the test proved nothing")
	}
	if bad := unintended(d.proxy); len(bad) > 0 {
		t.Errorf("writes reached the API server during the outage: %v", bad)
	}

	d.proxy.Remove(outage)
	restarted := d.proc.Exited()
	if restarted {
		d.proc = driver.Spawn(t, d.bin, d.args...) // as the kubelet restarts the container
	}
	back := time.Now()
	testenv.Eventually(t, 90*time.Second, "the edit corrected once the server is back", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 30*time.Second, "ready again", func() bool { return ready(d.probe) })
	t.Logf("recovered in %s (restarted: %v); writes before and after the outage:\n  %s", time.Since(back).Round(time.Second), restarted,
		strings.Join(writes(d.proxy), "\n  "))
	if bad := unintended(d.proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}

// TestEveryRequestSlowedByTwoSeconds: the API server answers every request 2 s late while driftd
// cycles every 5 s and a MachineDeployment is edited. Cycles end (within their deadline), the
// edit is corrected exactly once, and nothing else is written.
func TestEveryRequestSlowedByTwoSeconds(t *testing.T) {
	ns := "fault-apiserver-slow"
	d := startDeployed(t, ns, "5s")
	slow := d.proxy.Inject(&testenv.Fault{Match: testenv.AllRequests, Delay: 2 * time.Second, Times: 1 << 30})
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 90*time.Second, "the edit corrected while the server is slow", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	done := strings.Count(d.proc.Out.String(), `"complete": true`)
	testenv.Eventually(t, 90*time.Second, "a complete cycle while the server is slow", func() bool {
		return strings.Count(d.proc.Out.String(), `"complete": true`) > done
	})
	if d.proxy.FaultHits(slow) == 0 {
		t.Fatal("no request was slowed; the test proved nothing")
	}
	d.proxy.Remove(slow)
	if n := len(d.proxy.Requests(func(r testenv.Request) bool { return applyOf(ns, "prod-md-0")(r) && !r.DryRun })); n != 1 {
		t.Errorf("the edit was corrected with %d writes, want 1", n)
	}
	if bad := unintended(d.proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}

// TestTheAPIServerRestartedMidCorrection: the kube-apiserver process is restarted as a kubelet
// restarts it (SIGTERM, SIGKILL after a 10 s grace, down 5 s, started again on the same etcd) while
// driftd's dry run of a correction is on its way (held by the proxy until the server is going
// down). driftd keeps its lease through the restart (it gives up after 30 s without a renewal);
// had it exited, it is started again as the kubelet would. The correction is made once; the watches come back (the proxy sees them open),
// and an edit afterwards is corrected too; a cycle completes after the restart; at most one
// DriftDetected Event per edit and process, no storm; nothing else written.
func TestTheAPIServerRestartedMidCorrection(t *testing.T) {
	ns := "fault-apiserver-restart"
	d := startDeployed(t, ns, "20s")
	drifted := len(driftEvents(t, ns))
	held := d.proxy.Inject(&testenv.Fault{Times: 1, Delay: 3 * time.Second,
		Match: testenv.DryRunPatch("/namespaces/" + ns + "/machinedeployments/prod-md-0")})
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 30*time.Second, "driftd's dry run of the correction on its way", func() bool { return d.proxy.FaultHits(held) == 1 })
	start := time.Now()
	killed, err := env.RestartAPIServer(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver back after %s (killed after its grace: %v)", time.Since(start).Round(100*time.Millisecond), killed)
	back := time.Now()
	processes, mark := 1, len(d.proc.Out.String())
	kubelet := func() { // starts driftd again when it exited, as the kubelet restarts a container
		if d.proc.Exited() {
			d.proc = driver.Spawn(t, d.bin, d.args...)
			processes, mark = processes+1, 0
		}
	}
	testenv.Eventually(t, 90*time.Second, "the edit corrected after the restart", func() bool { kubelet(); return drv.Replicas(ns, "prod-md-0") == 3 })
	t.Logf("corrected %s after the server was back, by driftd's process %d", time.Since(back).Round(100*time.Millisecond), processes)
	testenv.Eventually(t, 60*time.Second, "the MachineDeployments' watch re-established", func() bool { kubelet(); return d.proxy.Watching("/machinedeployments") })
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 8)
	testenv.Eventually(t, 60*time.Second, "an edit after the restart corrected", func() bool { kubelet(); return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 60*time.Second, "a cycle completed after the restart", func() bool {
		kubelet()
		return strings.Contains(d.proc.Out.String()[mark:], `"complete": true`)
	})
	if n := len(driftEvents(t, ns)) - drifted; n < 2 || n > 2*processes {
		t.Errorf("%d new DriftDetected Events for two edits over %d processes of driftd, want 2 to %d", n, processes, 2*processes)
	}
	t.Logf("writes through the restart:\n  %s", strings.Join(writes(d.proxy), "\n  "))
	if bad := unintended(d.proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
	if n := len(d.proxy.Requests(func(r testenv.Request) bool {
		return applyOf(ns, "prod-md-0")(r) && testenv.Writes(r) && r.Status == http.StatusOK
	})); n != 2 {
		t.Errorf("%d corrections of prod-md-0 went through for two edits, want 2", n)
	}
}

// driftEvents are the DriftDetected Events in ns, counted by their series.
func driftEvents(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, e := range drv.AllEvents(t, ns) {
		if strings.Contains(e, "DriftDetected") {
			out = append(out, e)
		}
	}
	return out
}

// TestItsOwnConfigMapsCorruptedOrDeletedWhileDown: driftd is stopped; its memo of clean verdicts
// is overwritten with garbage, its status ConfigMap deleted, and a MachineDeployment edited. The
// restarted driftd takes nothing for clean on the garbage's word: it corrects the edit, writes its
// status again, and writes nothing else.
func TestItsOwnConfigMapsCorruptedOrDeletedWhileDown(t *testing.T) {
	ns := "fault-own-state"
	d := startDeployed(t, ns, "1h")
	d.proc.Stop(30 * time.Second)
	ctx := context.Background()
	memo := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: system(ns), Name: "driftd-memo-" + ns}, memo); err != nil {
		t.Fatal(err)
	}
	memo.BinaryData = map[string][]byte{"clean": []byte("\xff\x00garbage, not a multiple of eight bytes\x13")}
	memo.Data = map[string]string{"unexpected": "key"}
	if err := env.Client.Update(ctx, memo); err != nil {
		t.Fatal(err)
	}
	status := &corev1.ConfigMap{}
	status.Namespace, status.Name = system(ns), "driftd-status-"+ns
	if err := env.Client.Delete(ctx, status); err != nil {
		t.Fatal(err)
	}
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)

	d.proxy.Reset()
	d.proc = driver.Spawn(t, d.bin, d.args...)
	testenv.Eventually(t, 90*time.Second, "the edit corrected after the restart", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	testenv.Eventually(t, 30*time.Second, "the status written again", func() bool {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(status), &corev1.ConfigMap{}) == nil
	})
	if bad := unintended(d.proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}

// TestSlowLeaseRenewalsKeepTheLeader: an API server busy with a large fleet answers two lease
// renewals in a row 12 s late, longer than controller-runtime's default renew deadline of 10 s
// (with it, a 10,000-cluster benchmark's driftd gave up its lease and exited). driftd keeps its
// lease, stays up, and corrects an edit made afterwards.
func TestSlowLeaseRenewalsKeepTheLeader(t *testing.T) {
	ns := "fault-slow-lease"
	d := startDeployed(t, ns, "1h")
	slow := d.proxy.Inject(&testenv.Fault{Match: func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/leases/")
	}, Delay: 12 * time.Second, Times: 2})
	renewed := func() int {
		return len(d.proxy.Requests(func(r testenv.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.Path, "/leases/") && r.Status == http.StatusOK
		}))
	}
	testenv.Eventually(t, 90*time.Second, "two lease renewals held", func() bool { return d.proxy.FaultHits(slow) == 2 })
	// Until both held renewals answered and the next renewal went through (or driftd gave up).
	held := renewed()
	testenv.Eventually(t, 90*time.Second, "the held renewals answered and the next one through", func() bool {
		return d.proc.Exited() || strings.Contains(d.proc.Out.String(), "leader election lost") || renewed() >= held+3
	})
	if d.proc.Exited() || strings.Contains(d.proc.Out.String(), "leader election lost") {
		t.Fatalf("driftd gave up its lease over two slow renewals:\n%s", d.proc.Out.String())
	}
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 30*time.Second, "the edit corrected by the same process", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	if d.proc.Exited() {
		t.Fatal("driftd exited")
	}
}
