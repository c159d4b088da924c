package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cloud"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

var (
	env *testenv.Env
	drv *driver.Driver
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { env, drv = e, driver.New(e) })
}

var gvkAWSMachine = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachine"}

// inventory is a fake cloud.Inventory (a seam driftd owns): it answers each Snapshot with what the
// test set, and counts the calls.
type inventory struct {
	mu        sync.Mutex
	instances []infra.Instance
	err       error
	complete  bool
	calls     int
	clusters  []infra.Cluster
}

func (i *inventory) Provider() string { return infra.ProviderAWS }

func (i *inventory) Snapshot(_ context.Context, clusters []infra.Cluster) (*infra.Snapshot, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.calls++
	i.clusters = clusters
	if i.err != nil {
		return nil, i.err
	}
	s := infra.NewSnapshot(infra.ProviderAWS)
	s.Instances = append([]infra.Instance(nil), i.instances...)
	if !i.complete {
		s.FailClusters(errors.New("a page of DescribeInstances failed"), clusters...)
	}
	return s, nil
}

// set makes the inventory answer completely with instances.
func (i *inventory) set(instances ...infra.Instance) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.instances, i.complete, i.err = instances, true, nil
}

// rendered is a fake cloud.Fleet: the rendered Clusters the test wrote, live objects read from the
// test bed's API server.
type rendered struct {
	r *cloud.Rendered
}

func (f *rendered) Rendered() *cloud.Rendered { return f.r }

func (f *rendered) Live(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return drv.Lookup(ctx, obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName())
}

func (f *rendered) List(ctx context.Context, gvk schema.GroupVersionKind, ns string, labels map[string]string) ([]*unstructured.Unstructured, error) {
	return drv.List(ctx, gvk, ns, labels)
}

// world is one cluster as Cluster API left it: its Cluster and AWSCluster live, n running Machines
// of the MachineDeployment <name>-md-0 (owned by a MachineSet, as Cluster API creates them), each
// with an instance the inventory lists — and the reconciler under test, recording real Events.
type world struct {
	ns, name  string
	inv       *inventory
	fleet     *rendered
	machines  []string
	instances map[string]infra.Instance // by Machine
}

func newWorld(t *testing.T, ns string, n int) *world {
	t.Helper()
	drv.Namespace(t, ns)
	name := "c1"
	c, _ := fleet.AWSCluster(name)
	objs, err := testenv.DecodeObjects([]byte(c))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ns: ns, name: name, inv: &inventory{}, instances: map[string]infra.Instance{}}
	objects := cloud.ObjectMap{}
	r := &cloud.Rendered{Revision: "main@sha1:test", Objects: objects}
	for _, o := range objs {
		o.SetNamespace(ns)
		objects[diff.KeyOf(o)] = o
		switch o.GetKind() {
		case "Cluster":
			ref := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: o.GetName()}}
			ref.SetGroupVersionKind(o.GroupVersionKind())
			r.Clusters = append(r.Clusters, ref)
			fallthrough
		case "AWSCluster":
			if err := env.Client.Create(context.Background(), o.DeepCopy()); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.fleet = &rendered{r: r}
	for i := range n {
		m := fmt.Sprintf("%s-md-0-m%d", name, i)
		id := fmt.Sprintf("i-%016x", i+1)
		pid := "aws:///eu-west-1a/" + id
		env.ProvisionMachine(t, ns, name, name+"-md-0", m, pid, gvkAWSMachine, map[string]any{"instanceType": "m6i.large"})
		w.machines = append(w.machines, m)
		w.instances[m] = infra.Instance{Provider: infra.ProviderAWS, ID: id, ProviderID: pid, Cluster: ns + "/" + name,
			State: infra.StateRunning, Type: "m6i.large", Region: "eu-west-1", Zone: "eu-west-1a",
			LaunchTime: time.Now().Add(-time.Hour), MachineName: ns + "/" + m}
	}
	w.answer()
	return w
}

// answer makes the inventory list every instance but those of the Machines named, and those in
// the states given.
func (w *world) answer(change ...func(map[string]*infra.Instance)) {
	byMachine := map[string]*infra.Instance{}
	for m, inst := range w.instances {
		inst := inst
		byMachine[m] = &inst
	}
	for _, c := range change {
		c(byMachine)
	}
	var out []infra.Instance
	for _, m := range w.machines {
		if inst := byMachine[m]; inst != nil {
			out = append(out, *inst)
		}
	}
	w.inv.set(out...)
}

// without is an answer lacking the instances of the Machines named.
func without(machines ...string) func(map[string]*infra.Instance) {
	return func(by map[string]*infra.Instance) {
		for _, m := range machines {
			delete(by, m)
		}
	}
}

// reconciler is the cloud reconciler of the world with opts, announcing through real Events.
func (w *world) reconciler(opts cloud.Options) *cloud.Reconciler {
	opts.Inventories = []cloud.Inventory{w.inv}
	if opts.Policy.Mode == "" {
		opts.Policy.Mode = diff.ModeCorrect
	}
	ledger := report.NewLedger(report.NewEvents(report.NewSyncRecorder(env.Client, env.Scheme)), nil, nil)
	return cloud.New(opts, cloud.Deps{Fleet: w.fleet, Client: env.Client, Mapper: env.Client.RESTMapper(), Ledger: ledger})
}

func cycle(t *testing.T, r *cloud.Reconciler) *report.Result {
	t.Helper()
	res, err := r.Cycle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func findingOn(res *report.Result, machine string) *diff.Finding {
	for i := range res.Findings {
		if res.Findings[i].Object.Kind == "Machine" && res.Findings[i].Object.Name == machine {
			return &res.Findings[i]
		}
	}
	return nil
}

// A Machine whose instance the complete inventory no longer lists is InstanceMissing and deleted
// for its MachineSet to replace (no MachineHealthCheck selects it), with
// MachineReplacementRequested on it; the other Machines are left alone.
func TestAMissingInstanceGetsItsMachineReplaced(t *testing.T) {
	w := newWorld(t, "cloud-missing", 6)
	r := w.reconciler(cloud.Options{})
	if res := cycle(t, r); len(res.Findings) != 0 || len(res.Errors) != 0 {
		t.Fatalf("a fleet equal to the cloud: findings %+v, errors %v", res.Findings, res.Errors)
	}
	victim := w.machines[2]
	w.answer(without(victim))
	res := cycle(t, r)
	f := findingOn(res, victim)
	if f == nil || f.Class != diff.ClassInstanceMissing || f.Action != diff.ActionReplace {
		t.Fatalf("finding on %s = %+v, want InstanceMissing, replace", victim, f)
	}
	if len(res.Remaining()) != 0 {
		t.Errorf("remaining after the replacement was asked for: %+v", res.Remaining())
	}
	if state := env.MachineState(t, w.ns, victim); state != "gone" {
		t.Errorf("Machine %s is %s; want it deleted", victim, state)
	}
	for _, m := range w.machines {
		if m != victim && env.MachineState(t, w.ns, m) != "ok" {
			t.Errorf("Machine %s was touched", m)
		}
	}
	evs := drv.AllEvents(t, w.ns)
	if !driver.HasEvent(trimKinds(evs, "Machine/"+victim), "MachineReplacementRequested", "replacement by delete") {
		t.Errorf("no MachineReplacementRequested on %s: %q", victim, evs)
	}
}

// trimKinds keeps the Events of AllEvents about one object, as "Reason: note".
func trimKinds(evs []string, object string) []string {
	var out []string
	for _, e := range evs {
		if rest, ok := strings.CutPrefix(e, object+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// A stopped instance under a running Machine is InstanceStopped; with a MachineHealthCheck
// selecting the Machine, the replacement is the remediate annotation, not a delete.
func TestAStoppedInstanceIsRemediatedThroughItsMachineHealthCheck(t *testing.T) {
	w := newWorld(t, "cloud-stopped", 6)
	mhc := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"clusterName": w.name, "selector": map[string]any{"matchLabels": map[string]any{"pool": w.name + "-md-0"}}}}}
	mhc.SetGroupVersionKind(diff.GVKMachineHealthCheck)
	mhc.SetNamespace(w.ns)
	mhc.SetName(w.name + "-md-0")
	if err := env.Client.Create(context.Background(), mhc); err != nil {
		t.Fatal(err)
	}
	victim := w.machines[0]
	w.answer(func(by map[string]*infra.Instance) { by[victim].State = infra.StateStopped })
	res := cycle(t, w.reconciler(cloud.Options{}))
	f := findingOn(res, victim)
	if f == nil || f.Class != diff.ClassInstanceStopped || f.Action != diff.ActionReplace || !strings.Contains(f.Reason, "MachineHealthCheck") {
		t.Fatalf("finding on %s = %+v, want InstanceStopped, replaced through the MachineHealthCheck", victim, f)
	}
	if state := env.MachineState(t, w.ns, victim); state != "remediate" {
		t.Errorf("Machine %s is %s; want it annotated for remediation", victim, state)
	}
}

// An answer that is not complete says nothing about what it lacks: no Machine is judged or
// touched, the provider is unavailable.
func TestAnIncompleteAnswerJudgesNothing(t *testing.T) {
	w := newWorld(t, "cloud-incomplete", 4)
	w.inv.mu.Lock()
	w.inv.instances, w.inv.complete = nil, false
	w.inv.mu.Unlock()
	res := cycle(t, w.reconciler(cloud.Options{}))
	if len(res.Findings) != 0 {
		t.Errorf("findings from an incomplete answer: %+v", res.Findings)
	}
	if len(res.Errors) == 0 || !strings.Contains(errors.Join(res.Errors...).Error(), "unavailable") {
		t.Errorf("errors %v; want the inventory named unavailable", res.Errors)
	}
	for _, m := range w.machines {
		if env.MachineState(t, w.ns, m) != "ok" {
			t.Errorf("Machine %s was touched", m)
		}
	}
}

// A region that held a cluster's instances and answers, complete, with none of them while its
// Machines remain is a wrong answer: InventorySuspect on the Cluster, no replacement — until it
// answers with its instances again.
func TestARegionThatEmptiedItselfIsSuspect(t *testing.T) {
	w := newWorld(t, "cloud-suspect", 6)
	r := w.reconciler(cloud.Options{Breaker: &diff.Breaker{MaxCount: -1}}) // the breaker off: the heuristic alone
	cycle(t, r)
	w.answer(without(w.machines...))
	res := cycle(t, r)
	for _, m := range w.machines {
		f := findingOn(res, m)
		if f == nil || f.Action != diff.ActionBlocked || !strings.Contains(f.Reason, "InventorySuspect") {
			t.Errorf("finding on %s = %+v, want blocked as InventorySuspect", m, f)
		}
		if env.MachineState(t, w.ns, m) != "ok" {
			t.Errorf("Machine %s was touched", m)
		}
	}
	if evs := drv.Events(t, w.ns, "Cluster", w.name); !driver.HasEvent(evs, "InventorySuspect", "eu-west-1") {
		t.Errorf("no InventorySuspect on Cluster %s: %q", w.name, evs)
	}
	// Still empty: still suspect, and said once.
	cycle(t, r)
	if n := strings.Count(strings.Join(drv.Events(t, w.ns, "Cluster", w.name), "\n"), "InventorySuspect:"); n != 1 {
		t.Errorf("InventorySuspect recorded %d times over two cycles of one occurrence, want 1", n)
	}
	// The region answers again with all but one: that one is missing, and replaced.
	w.answer(without(w.machines[5]))
	res = cycle(t, r)
	if f := findingOn(res, w.machines[5]); f == nil || f.Action != diff.ActionReplace {
		t.Errorf("after the region answered again: finding %+v, want a replacement", f)
	}
}

// Budgets: never more than one replacement in flight per MachineDeployment (the default), and
// the fleet cap across clusters.
func TestReplacementsStayWithinTheBudget(t *testing.T) {
	w := newWorld(t, "cloud-budget", 10)
	gone := []string{w.machines[3], w.machines[7]}
	w.answer(without(gone...))
	res := cycle(t, w.reconciler(cloud.Options{}))
	replaced, blocked := 0, 0
	for _, m := range gone {
		f := findingOn(res, m)
		switch {
		case f != nil && f.Action == diff.ActionReplace && env.MachineState(t, w.ns, m) == "gone":
			replaced++
		case f != nil && f.Action == diff.ActionBlocked && strings.HasPrefix(f.Reason, "budget:") && env.MachineState(t, w.ns, m) == "ok":
			blocked++
		default:
			t.Errorf("%s: finding %+v, state %s", m, f, env.MachineState(t, w.ns, m))
		}
	}
	if replaced != 1 || blocked != 1 {
		t.Errorf("replaced %d, held back by the budget %d; want 1 and 1", replaced, blocked)
	}
}

// In detect mode, and while the last render failed, a missing instance is reported and its
// Machine left alone.
func TestNothingIsReplacedInDetectModeOrWhileTheRenderFailed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     cloud.Options
		degraded string
		reason   string
	}{
		{name: "detect", opts: cloud.Options{Policy: diff.Policy{Mode: diff.ModeDetect}}, reason: "detect mode"},
		{name: "degraded", degraded: "the render of main@sha1:bad failed", reason: "no corrections while the render of main@sha1:bad failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, "cloud-"+tc.name, 4)
			w.fleet.r.Degraded = tc.degraded
			w.answer(without(w.machines[1]))
			res := cycle(t, w.reconciler(tc.opts))
			if f := findingOn(res, w.machines[1]); f == nil || f.Class != diff.ClassInstanceMissing || f.Action != diff.ActionReport || f.Reason != tc.reason {
				t.Errorf("finding %+v, want InstanceMissing reported (%s)", f, tc.reason)
			}
			if state := env.MachineState(t, w.ns, w.machines[1]); state != "ok" {
				t.Errorf("Machine %s is %s", w.machines[1], state)
			}
		})
	}
}

// Plan judges as a cycle does and changes nothing: no replacement, no Event, and no memory (a
// later cycle is not told a region emptied itself by what plan saw).
func TestPlanChangesNothing(t *testing.T) {
	w := newWorld(t, "cloud-plan", 4)
	r := w.reconciler(cloud.Options{})
	w.answer(without(w.machines[0]))
	res, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f := findingOn(res, w.machines[0]); f == nil || f.Action != diff.ActionReplace {
		t.Errorf("plan's finding %+v, want the replacement a cycle would make", f)
	}
	if state := env.MachineState(t, w.ns, w.machines[0]); state != "ok" {
		t.Errorf("plan left Machine %s %s", w.machines[0], state)
	}
	if evs := drv.AllEvents(t, w.ns); len(evs) != 0 {
		t.Errorf("plan recorded Events: %q", evs)
	}
}

// A cluster whose identity its namespace may not use is read with no identity at all: the
// inventory is never asked about it, and it is reported unavailable.
func TestAClusterWhoseIdentityItMayNotUseIsNotRead(t *testing.T) {
	w := newWorld(t, "cloud-identity", 2)
	identity := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"allowedNamespaces": map[string]any{"list": []any{"somewhere-else"}}}}}
	identity.SetGroupVersionKind(schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSClusterControllerIdentity"})
	identity.SetName("default")
	if err := env.Client.Create(context.Background(), identity); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), identity) })
	aws := &unstructured.Unstructured{}
	aws.SetGroupVersionKind(schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSCluster"})
	aws.SetNamespace(w.ns)
	aws.SetName(w.name)
	patch := []byte(`{"spec":{"identityRef":{"kind":"AWSClusterControllerIdentity","name":"default"}}}`)
	if err := env.Client.Patch(context.Background(), aws, client.RawPatch("application/merge-patch+json", patch)); err != nil {
		t.Fatal(err)
	}
	w.answer(without(w.machines...))
	res := cycle(t, w.reconciler(cloud.Options{}))
	if len(res.Findings) != 0 {
		t.Errorf("findings for a cluster driftd may not read: %+v", res.Findings)
	}
	if w.inv.calls != 0 {
		t.Errorf("the inventory was asked %d times about a cluster whose identity does not allow its namespace", w.inv.calls)
	}
	if len(res.Errors) == 0 || !strings.Contains(errors.Join(res.Errors...).Error(), "allowedNamespaces") {
		t.Errorf("errors %v; want the identity's allowedNamespaces named", res.Errors)
	}
}
