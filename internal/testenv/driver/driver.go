// Package driver drives driftd in tests the way its users do: its commands run in-process with
// their flags (`run` until the test ends, `run --once`, `plan -o json`), and what a user then
// looks at — objects, Events, the status ConfigMap — read back from the management cluster. e2e,
// capi, bench and the demo share it, so that each test says only what is its own.
package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// Driver runs driftd against a test bed's API server and reads what it did there.
type Driver struct {
	// Client reads and writes the management cluster as a user's kubectl does.
	Client client.Client
	// Kubeconfig is a kubeconfig file of the management cluster for driftd's --kubeconfig.
	Kubeconfig func(testing.TB) string
}

// New drives driftd against env.
func New(env *testenv.Env) *Driver {
	return &Driver{Client: env.Client, Kubeconfig: env.KubeconfigFile}
}

// Exec runs one driftd command in-process, writing its output to out and errOut, and returns its
// exit code.
func Exec(ctx context.Context, out, errOut io.Writer, args ...string) int {
	return cli.Execute(ctx, args, out, errOut)
}

// Exec runs one driftd command in-process and returns its exit code, stdout and stderr.
func (d *Driver) Exec(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut testenv.SyncBuffer
	code := Exec(ctx, &out, &errOut, args...)
	return code, out.String(), errOut.String()
}

// Args are the flags a test's driftd reads a fleet repository with: the repository at dir
// (branch main, folder fleet), the management cluster, an owner of the test's own (so tests that
// share the API server never take each other's objects for orphans) and a git cache of its own.
func (d *Driver) Args(tb testing.TB, dir, owner string) []string {
	return []string{"--repo", dir, "--ref", "main", "--path", fleet.Dir, "--kubeconfig", d.Kubeconfig(tb),
		"--owner", owner, "--git-cache-dir", tb.TempDir()}
}

// Daemon is `driftd run` running in-process until the test ends.
type Daemon struct {
	// Out is its log.
	Out    *testenv.SyncBuffer
	cancel context.CancelFunc
	done   chan int
}

// Start starts `driftd run` with its namespace ns (its lease, status, memo and inventory) and
// args, after the defaults (a development log, no metrics or probe listeners unless args set
// them), and stops it when the test ends, logging its output if the test failed.
func (d *Driver) Start(tb testing.TB, ns string, args ...string) *Daemon {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dm := &Daemon{Out: &testenv.SyncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	full := append([]string{"run", "--namespace", ns, "--log-development", "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, args...)
	go func() { dm.done <- Exec(ctx, dm.Out, dm.Out, full...) }()
	tb.Cleanup(func() {
		if code, ok := dm.Stop(30 * time.Second); !ok {
			tb.Errorf("driftd run did not stop within 30s of its context ending")
		} else if code != 0 {
			tb.Logf("driftd run exited %d", code)
		}
		if tb.Failed() {
			tb.Logf("driftd run output:\n%s", dm.Out.String())
		}
	})
	return dm
}

// Stop ends the daemon's context and waits up to timeout for it to exit; it reports the exit code
// and whether it exited.
func (dm *Daemon) Stop(timeout time.Duration) (int, bool) {
	dm.cancel()
	select {
	case code := <-dm.done:
		dm.done <- code // a later Stop sees it too
		return code, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Exited reports the exit code when the daemon has exited on its own.
func (dm *Daemon) Exited() (int, bool) {
	select {
	case code := <-dm.done:
		dm.done <- code
		return code, true
	default:
		return 0, false
	}
}

// RunOnce runs `driftd run --once` with its namespace ns and args, failing the test if it does not
// exit 0, and returns its output.
func (d *Driver) RunOnce(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	code, out, errOut := d.Exec(context.Background(), append([]string{"run", "--once", "--log-development", "--namespace", ns}, args...)...)
	if code != 0 {
		tb.Fatalf("run --once exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	return out + errOut
}

// PlanDoc is the output of `plan -o json`.
type PlanDoc struct {
	Revision string         `json:"revision"`
	Findings []diff.Finding `json:"findings"`
	Rollouts diff.Rollouts  `json:"rollouts"`
	Errors   []string       `json:"errors"`
}

// Finding returns the finding on the object of kind and name, or nil.
func (p PlanDoc) Finding(kind, name string) *diff.Finding {
	for i := range p.Findings {
		if p.Findings[i].Object.Kind == kind && p.Findings[i].Object.Name == name {
			return &p.Findings[i]
		}
	}
	return nil
}

// Plan runs `driftd plan -o json` with args and returns its exit code, its document and stderr;
// output that is not JSON fails the test.
func (d *Driver) Plan(tb testing.TB, args ...string) (int, PlanDoc, string) {
	tb.Helper()
	code, out, errOut := d.Exec(context.Background(), append([]string{"plan", "-o", "json"}, args...)...)
	var doc PlanDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		tb.Fatalf("plan printed no JSON (exit %d): %v\nstdout: %s\nstderr: %s", code, err, out, errOut)
	}
	return code, doc, errOut
}

// Namespace creates a namespace as a user's kubectl would (driftd's own, as config/ has it), and
// returns its name.
func (d *Driver) Namespace(tb testing.TB, name string) string {
	tb.Helper()
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := d.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// Get reads an object, failing the test when it cannot.
func (d *Driver) Get(tb testing.TB, gvk schema.GroupVersionKind, ns, name string) *unstructured.Unstructured {
	tb.Helper()
	u, err := d.Lookup(context.Background(), gvk, ns, name)
	if err == nil && u == nil {
		err = fmt.Errorf("not found")
	}
	if err != nil {
		tb.Fatalf("getting %s %s/%s: %v", gvk.Kind, ns, name, err)
	}
	return u
}

// Lookup reads an object; nil when it does not exist.
func (d *Driver) Lookup(ctx context.Context, gvk schema.GroupVersionKind, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := d.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return u, nil
}

// Exists reports whether an object exists (false when it cannot be read).
func (d *Driver) Exists(gvk schema.GroupVersionKind, ns, name string) bool {
	u, err := d.Lookup(context.Background(), gvk, ns, name)
	return err == nil && u != nil
}

// List lists the objects of a kind in ns with the labels given, ordered by name.
func (d *Driver) List(ctx context.Context, gvk schema.GroupVersionKind, ns string, labels map[string]string) ([]*unstructured.Unstructured, error) {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := d.Client.List(ctx, l, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(l.Items))
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// ByName lists the objects of a kind in ns with the labels given, by name, failing the test when
// it cannot.
func (d *Driver) ByName(tb testing.TB, gvk schema.GroupVersionKind, ns string, labels map[string]string) map[string]*unstructured.Unstructured {
	tb.Helper()
	objs, err := d.List(context.Background(), gvk, ns, labels)
	if err != nil {
		tb.Fatalf("listing %s in %s: %v", gvk.Kind, ns, err)
	}
	out := make(map[string]*unstructured.Unstructured, len(objs))
	for _, o := range objs {
		out[o.GetName()] = o
	}
	return out
}

// ResourceVersions are the resourceVersions of every object of the kinds in ns, by "Kind/name".
func (d *Driver) ResourceVersions(tb testing.TB, ns string, gvks ...schema.GroupVersionKind) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, gvk := range gvks {
		for name, o := range d.ByName(tb, gvk, ns, nil) {
			out[gvk.Kind+"/"+name] = o.GetResourceVersion()
		}
	}
	return out
}

// Scale sets a MachineDeployment's replicas as another field manager would (kubectl scale).
func (d *Driver) Scale(tb testing.TB, manager, ns, name string, replicas int64) {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(diff.GVKMachineDeployment)
	u.SetNamespace(ns)
	u.SetName(name)
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if err := d.Client.Patch(context.Background(), u, client.RawPatch("application/merge-patch+json", patch), client.FieldOwner(manager)); err != nil {
		tb.Fatalf("scaling %s/%s as %s: %v", ns, name, manager, err)
	}
}

// Replicas is a MachineDeployment's spec.replicas, or -1 while it does not exist or cannot be read.
func (d *Driver) Replicas(ns, name string) int64 {
	u, err := d.Lookup(context.Background(), diff.GVKMachineDeployment, ns, name)
	if err != nil || u == nil {
		return -1
	}
	r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	return r
}

// Running counts the Machines among ms that are Running with a Node and not being deleted.
func Running(ms []*unstructured.Unstructured) int {
	n := 0
	for _, m := range ms {
		if IsRunning(m) {
			n++
		}
	}
	return n
}

// IsRunning reports whether a Machine is Running with a Node and not being deleted.
func IsRunning(m *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(m.Object, "status", "phase")
	node, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name")
	return phase == "Running" && node != "" && m.GetDeletionTimestamp() == nil
}

// Events are driftd's Events on an object as "Reason: note", oldest first, as `kubectl events
// --for kind/name` lists them.
func (d *Driver) Events(tb testing.TB, ns, kind, name string) []string {
	tb.Helper()
	var out []string
	for _, ev := range d.events(tb, ns) {
		if ev.Regarding.Kind == kind && ev.Regarding.Name == name {
			out = append(out, ev.Reason+": "+ev.Note)
		}
	}
	return out
}

// AllEvents are every Event driftd recorded in ns, as "Kind/name Reason: note".
func (d *Driver) AllEvents(tb testing.TB, ns string) []string {
	tb.Helper()
	var out []string
	for _, ev := range d.events(tb, ns) {
		out = append(out, ev.Regarding.Kind+"/"+ev.Regarding.Name+" "+ev.Reason+": "+ev.Note)
	}
	return out
}

// StatusEvents are the Events on the status ConfigMap of the driftd (whatever its owner) whose
// namespace is ns.
func (d *Driver) StatusEvents(tb testing.TB, ns string) []string {
	tb.Helper()
	var out []string
	for _, ev := range d.events(tb, ns) {
		if ev.Regarding.Kind == "ConfigMap" && strings.HasPrefix(ev.Regarding.Name, report.StatusName("")) {
			out = append(out, ev.Reason+": "+ev.Note)
		}
	}
	return out
}

func (d *Driver) events(tb testing.TB, ns string) []eventsv1.Event {
	tb.Helper()
	list := &eventsv1.EventList{}
	if err := d.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		tb.Fatalf("listing Events in %s: %v", ns, err)
	}
	out := list.Items[:0]
	for _, ev := range list.Items {
		if ev.ReportingController == "driftd" {
			out = append(out, ev)
		}
	}
	slices.SortStableFunc(out, func(a, b eventsv1.Event) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return out
}

// HasEvent reports whether evs ("Reason: note") hold one with reason whose note contains every
// part.
func HasEvent(evs []string, reason string, parts ...string) bool {
	for _, e := range evs {
		if !strings.HasPrefix(e, reason+":") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(e, p)
		}
		if all {
			return true
		}
	}
	return false
}

// StatusName is the name of the status ConfigMap of the driftd whose namespace is ns (whatever its
// owner), or "" before its first cycle.
func (d *Driver) StatusName(ns string) string {
	list := &corev1.ConfigMapList{}
	if err := d.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		return ""
	}
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, report.StatusName("")) {
			return cm.Name
		}
	}
	return ""
}

// Watching reports whether the driftd whose namespace is ns has written its status ConfigMap:
// its first cycle is done and its watches have started.
func (d *Driver) Watching(ns string) bool { return d.StatusName(ns) != "" }

// Process is driftd's binary (the image's) running as a container runs it: its own process, killed
// with the test binary, and stopped when the test ends.
type Process struct {
	// Out is its log.
	Out    *testenv.SyncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
	peak   atomic.Int64
}

// Spawn starts bin with args (after --log-development) as a process, as the kubelet starts a
// container, and stops it when the test ends, logging its output if the test failed.
func Spawn(tb testing.TB, bin string, args ...string) *Process {
	tb.Helper()
	return SpawnEnv(tb, nil, bin, args...)
}

// SpawnEnv is Spawn with env ("NAME=value") added to the test's environment for the binary
// alone: a setting meant for driftd (GOMEMLIMIT) must not reach the test's API server, which
// another process would start with the test's environment.
func SpawnEnv(tb testing.TB, env []string, bin string, args ...string) *Process {
	tb.Helper()
	p := &Process{Out: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append(args[:1:1], append([]string{"--log-development"}, args[1:]...)...)...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	go p.sampleMemory()
	tb.Cleanup(func() {
		p.Stop(30 * time.Second)
		if tb.Failed() {
			tb.Logf("driftd %s output:\n%s", strings.Join(args, " "), p.Out.String())
		}
	})
	return p
}

// Kill kills the process with SIGKILL — no shutdown of any kind — and waits for it to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Stop sends SIGTERM and waits up to timeout (then kills); it reports whether it stopped in time.
func (p *Process) Stop(timeout time.Duration) bool {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}

// Wait waits up to timeout for the process to exit on its own and returns its exit code, or -1
// when it is still running.
func (p *Process) Wait(timeout time.Duration) int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// PeakRSS is the most memory the process held resident (its VmHWM), as last sampled (every
// 100 ms while it runs). Not the exit status's rusage: that counts the test binary's memory too,
// which the child shared until it started driftd. A render sandbox's child is not counted; it has
// its own limit (--render-max-memory).
func (p *Process) PeakRSS() int64 { return p.peak.Load() }

func (p *Process) sampleMemory() {
	status := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(status); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if kib, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					var n int64
					if _, err := fmt.Sscanf(strings.TrimSpace(kib), "%d kB", &n); err == nil {
						p.peak.Store(n << 10)
					}
				}
			}
		}
		select {
		case <-p.exited:
			return
		case <-tick.C:
		}
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}
