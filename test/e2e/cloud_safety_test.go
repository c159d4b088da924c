package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// poolCluster is an AWS cluster with a MachineDeployment md-0 of replicas and a MachineHealthCheck
// for it, as Git holds them; identity, when set, is the AWSCluster's identityRef.
func poolCluster(name string, replicas int, identity string) string {
	ref := ""
	if identity != "" {
		kind, id, _ := strings.Cut(identity, "/")
		ref = fmt.Sprintf("\n  identityRef: {kind: %s, name: %s}", kind, id)
	}
	return strings.NewReplacer("NAME", name, "REPLICAS", fmt.Sprint(replicas), "IDENTITY", ref).Replace(`apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: NAME
spec:
  infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSCluster, name: NAME}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSCluster
metadata:
  name: NAME
spec:
  region: eu-west-1IDENTITY
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: NAME-md-0
spec:
  clusterName: NAME
  replicas: REPLICAS
  selector:
    matchLabels: {pool: NAME-md-0}
  template:
    metadata:
      labels: {pool: NAME-md-0}
    spec:
      clusterName: NAME
      version: v1.34.1
      bootstrap: {dataSecretName: NAME-md-0}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: NAME-md-0}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineHealthCheck
metadata:
  name: NAME-md-0
spec:
  clusterName: NAME
  selector:
    matchLabels: {pool: NAME-md-0}
`)
}

// provisionPool launches n instances for cluster's md-0 (with cfg's account when given) and creates
// their Running Machines; it returns the instance IDs by Machine name.
func provisionPool(t *testing.T, cloud *awsCloud, ns, cluster string, n int, as *ec2.Client) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-md-0-m%d", cluster, i)
		var id, pid string
		if as != nil {
			id, pid = cloud.launchWith(t, as, cluster, ns+"/"+name)
		} else {
			id, pid = cloud.launch(t, cluster, ns+"/"+name)
		}
		ids[name] = id
		env.ProvisionMachine(t, ns, cluster, cluster+"-md-0", name, pid, gvkAWSMachine, map[string]any{"instanceType": "m5.large"})
	}
	return ids
}

// machineUIDs returns the UID and remediate annotation of every Machine in ns.
func machineUIDs(tb testing.TB, ns string) map[string]string {
	tb.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(diff.GVKMachine.GroupVersion().WithKind("MachineList"))
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range list.Items {
		_, annotated := m.GetAnnotations()[diff.AnnotationRemediateMachine]
		out[m.GetName()] = fmt.Sprintf("%s remediate=%v deleting=%v", m.GetUID(), annotated, m.GetDeletionTimestamp() != nil)
	}
	return out
}

func (c *awsCloud) terminate(t *testing.T, ids ...string) {
	t.Helper()
	_, err := c.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: ids})
	c.do(t, "TerminateInstances", err)
}

func (c *awsCloud) stop(t *testing.T, ids ...string) {
	t.Helper()
	_, err := c.ec2.StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: ids})
	c.do(t, "StopInstances", err)
}

// TestAWrongCloudAnswerReplacesNothing: 3 of the 4 instances of a pool vanish at once — what an
// empty answer or a credential of another account looks like. Like a MachineHealthCheck past
// its limit, driftd replaces none and says why on the Cluster (InventorySuspect); in another
// cluster, 1 of 4 gone is replaced as usual.
func TestAWrongCloudAnswerReplacesNothing(t *testing.T) {
	ns := "breaker"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("suspect.yaml", poolCluster("suspect", 4, "")).Add("sane.yaml", poolCluster("sane", 4, "")).Files())
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "aws")
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	suspect := provisionPool(t, cloud, ns, "suspect", 4, nil)
	sane := provisionPool(t, cloud, ns, "sane", 4, nil)
	cloud.terminate(t, suspect["suspect-md-0-m1"], suspect["suspect-md-0-m2"], suspect["suspect-md-0-m3"])
	cloud.terminate(t, sane["sane-md-0-m1"])
	before := machineUIDs(t, ns)

	out := drv.RunOnce(t, ns, args...)
	after := machineUIDs(t, ns)
	defer func() {
		if t.Failed() {
			t.Log(out)
		}
	}()
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("suspect-md-0-m%d", i)
		if after[name] != before[name] {
			t.Errorf("%s was touched while its inventory looked wrong: %s → %s", name, before[name], after[name])
		}
	}
	if !strings.Contains(after["sane-md-0-m1"], "remediate=true") {
		t.Errorf("sane-md-0-m1 (1 of 4 gone) = %s, want annotated for its MachineHealthCheck", after["sane-md-0-m1"])
	}
	evs := drv.Events(t, ns, "Cluster", "suspect")
	if !driver.HasEvent(evs, "InventorySuspect") || !strings.Contains(strings.Join(evs, "\n"), "3 of 4 Machines") {
		t.Errorf("Events on Cluster suspect %q; want InventorySuspect naming 3 of 4", evs)
	}
}

// TestAMachineIsNotMissingWhileItsInstanceMayNotBeListedYet: a Machine still provisioning, and one
// that got its providerID while a slow snapshot was being read, are never InstanceMissing.
func TestAMachineIsNotMissingWhileItsInstanceMayNotBeListedYet(t *testing.T) {
	ns := "young"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("young.yaml", poolCluster("young", 8, "")).Files())
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	provisionPool(t, cloud, ns, "young", 6, nil)

	// A slow cloud: DescribeInstances is answered only once the test has changed the fleet behind
	// the answer (moto has read it by then).
	read, answer := make(chan struct{}, 1), make(chan struct{})
	var answerOnce sync.Once
	release := func() { answerOnce.Do(func() { close(answer) }) }
	motoProxy(t, cloud, func(body []byte) {
		if !bytes.Contains(body, []byte("Action=DescribeInstances")) {
			return
		}
		select {
		case read <- struct{}{}:
		default:
		}
		<-answer
	})
	t.Cleanup(release) // before the proxy closes: cleanups run last first

	type planned struct {
		code        int
		out, errOut string
	}
	done := make(chan planned, 1)
	go func() {
		code, out, errOut := drv.Exec(context.Background(), append([]string{"plan", "-o", "json"}, append(drv.Args(t, repo.Dir, ns), "--provider", "aws")...)...)
		done <- planned{code, out, errOut}
	}()
	select {
	case <-read:
	case <-time.After(time.Minute):
		release()
		t.Fatal("plan never read the instances")
	}
	// While the answer is on its way: a Machine gets its providerID (its instance launched after
	// the snapshot was read), and a Machine still provisioning names an instance not listed yet.
	_, pid := cloud.launch(t, "young", ns+"/young-md-0-late")
	env.ProvisionMachine(t, ns, "young", "young-md-0", "young-md-0-late", pid, gvkAWSMachine, map[string]any{"instanceType": "m5.large"})
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(diff.GVKMachine)
	m.SetNamespace(ns)
	m.SetName("young-md-0-provisioning")
	m.SetLabels(map[string]string{diff.LabelClusterName: "young", diff.LabelDeploymentName: "young-md-0"})
	m.Object["spec"] = map[string]any{"clusterName": "young", "providerID": "aws:///eu-west-1a/i-0123456789abcdef0",
		"bootstrap": map[string]any{"dataSecretName": "x"}, "infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachine", "name": "x"}}
	if err := env.Client.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	release()
	p := <-done
	var doc driver.PlanDoc
	if err := json.Unmarshal([]byte(p.out), &doc); err != nil || p.code == 1 || len(doc.Errors) > 0 {
		t.Fatalf("plan exited %d with errors %q (%v); it must have read the whole inventory\nstderr: %s", p.code, doc.Errors, err, p.errOut)
	}
	for _, name := range []string{"young-md-0-late", "young-md-0-provisioning"} {
		if f := doc.Finding("Machine", name); f != nil {
			t.Errorf("%s: %+v; it is not missing", name, f)
		}
	}
	// And the next, unhurried look: the late Machine's instance is there; the provisioning one is
	// still not judged.
	t.Setenv("AWS_ENDPOINT_URL", cloud.moto.Endpoint)
	code, doc, stderr := drv.Plan(t, append(drv.Args(t, repo.Dir, ns), "--provider", "aws")...)
	if code == 1 || len(doc.Errors) > 0 {
		t.Fatalf("second plan exited %d with errors %q\nstderr: %s", code, doc.Errors, stderr)
	}
	for _, name := range []string{"young-md-0-late", "young-md-0-provisioning"} {
		if f := doc.Finding("Machine", name); f != nil {
			t.Errorf("second look: %s: %+v", name, f)
		}
	}
}

// setAvailable sets the available replicas a MachineDeployment's status reports (no Cluster API
// controller runs here to do it).
func setAvailable(tb testing.TB, ns, name string, available int64) {
	tb.Helper()
	md := drv.Get(tb, diff.GVKMachineDeployment, ns, name)
	_ = unstructured.SetNestedField(md.Object, available, "status", "availableReplicas")
	if err := env.Client.Status().Update(context.Background(), md); err != nil {
		tb.Fatal(err)
	}
}

// TestTheReplacementBudgetHoldsUntilThePoolIsAvailableAgain: two stopped instances in one pool.
// The first Machine is replaced; once it is gone and its successor still provisions, the second
// is still held back — a pool never drains below its replicas one replacement after another.
func TestTheReplacementBudgetHoldsUntilThePoolIsAvailableAgain(t *testing.T) {
	ns := "budget"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("pool.yaml", poolCluster("pool", 8, "")).Files())
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "aws")
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	ids := provisionPool(t, cloud, ns, "pool", 8, nil)
	setAvailable(t, ns, "pool-md-0", 8)
	cloud.stop(t, ids["pool-md-0-m1"], ids["pool-md-0-m2"])
	uid2 := drv.Get(t, diff.GVKMachine, ns, "pool-md-0-m2").GetUID()

	drv.RunOnce(t, ns, args...)
	if s := env.MachineState(t, ns, "pool-md-0-m1"); s != "remediate" {
		t.Fatalf("m1 %q, want annotated for its MachineHealthCheck", s)
	}
	if s := env.MachineState(t, ns, "pool-md-0-m2"); s != "ok" {
		t.Fatalf("m2 %q while m1's replacement is in flight", s)
	}

	// The MachineHealthCheck deleted m1; its successor provisions; 7 of 8 are available.
	deleteMachine(t, ns, "pool-md-0-m1")
	_, pid := cloud.launch(t, "pool", ns+"/pool-md-0-m9")
	env.ProvisionMachine(t, ns, "pool", "pool-md-0", "pool-md-0-m9", pid, gvkAWSMachine, map[string]any{"instanceType": "m5.large"})
	m9 := drv.Get(t, diff.GVKMachine, ns, "pool-md-0-m9")
	_ = unstructured.SetNestedField(m9.Object, "Provisioning", "status", "phase")
	unstructured.RemoveNestedField(m9.Object, "status", "nodeRef")
	if err := env.Client.Status().Update(context.Background(), m9); err != nil {
		t.Fatal(err)
	}
	setAvailable(t, ns, "pool-md-0", 7)
	drv.RunOnce(t, ns, args...)
	if s := env.MachineState(t, ns, "pool-md-0-m2"); s != "ok" || drv.Get(t, diff.GVKMachine, ns, "pool-md-0-m2").GetUID() != uid2 {
		t.Fatalf("m2 %q while m1's successor still provisions; the budget must hold", s)
	}
	blocked := false
	for _, e := range drv.Events(t, ns, "Machine", "pool-md-0-m2") {
		blocked = blocked || (strings.HasPrefix(e, "CorrectionBlocked:") && strings.Contains(e, "not all available again"))
	}
	if !blocked {
		t.Errorf("m2 Events %q lack the budget's reason", drv.Events(t, ns, "Machine", "pool-md-0-m2"))
	}

	// The successor runs: the pool is whole again, and m2's turn comes.
	_ = unstructured.SetNestedField(m9.Object, "Running", "status", "phase")
	_ = unstructured.SetNestedField(m9.Object, "pool-md-0-m9", "status", "nodeRef", "name")
	if err := env.Client.Status().Update(context.Background(), m9); err != nil {
		t.Fatal(err)
	}
	setAvailable(t, ns, "pool-md-0", 8)
	drv.RunOnce(t, ns, args...)
	if s := env.MachineState(t, ns, "pool-md-0-m2"); s != "remediate" {
		t.Errorf("m2 %q once the pool is available again, want annotated", s)
	}
}

// TestSkipRemediationAndPausedMachinesAreLeftAlone: what Cluster API's own remediation honours,
// driftd honours.
func TestSkipRemediationAndPausedMachinesAreLeftAlone(t *testing.T) {
	ns := "hands-off"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("pool.yaml", poolCluster("pool", 8, "")).Files())
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "aws", "--max-replacements", "8")
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	ids := provisionPool(t, cloud, ns, "pool", 8, nil)
	for name, ann := range map[string]string{"pool-md-0-m1": diff.AnnotationSkipRemediation, "pool-md-0-m2": diff.AnnotationPaused} {
		m := drv.Get(t, diff.GVKMachine, ns, name)
		m.SetAnnotations(map[string]string{ann: ""})
		if err := env.Client.Update(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	cloud.stop(t, ids["pool-md-0-m1"], ids["pool-md-0-m2"])
	before := machineUIDs(t, ns)
	drv.RunOnce(t, ns, args...)
	after := machineUIDs(t, ns)
	for name, why := range map[string]string{"pool-md-0-m1": "skip-remediation", "pool-md-0-m2": "paused"} {
		if after[name] != before[name] {
			t.Errorf("%s was touched: %s → %s", name, before[name], after[name])
		}
		found := false
		for _, e := range drv.Events(t, ns, "Machine", name) {
			found = found || (strings.HasPrefix(e, "CorrectionBlocked:") && strings.Contains(e, why))
		}
		if !found {
			t.Errorf("%s Events %q lack CorrectionBlocked naming %s", name, drv.Events(t, ns, "Machine", name), why)
		}
	}
}

// TestRunOnceDoesNotReplaceBesideADaemon: `run --once` that could replace Machines takes the
// daemon's lease; while a daemon holds it, run --once refuses and touches nothing.
func TestRunOnceDoesNotReplaceBesideADaemon(t *testing.T) {
	ns := "lease-once"
	system := drv.Namespace(t, "lease-once-system")
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("pool.yaml", poolCluster("pool", 8, "")).Files())
	source := drv.Args(t, repo.Dir, ns)
	drv.RunOnce(t, system, source...)
	ids := provisionPool(t, cloud, ns, "pool", 8, nil)
	drv.Start(t, system, append(source, "--provider", "aws", "--leader-elect", "--interval", "1h", "--cloud-interval", "1h")...)
	testenv.Eventually(t, 30*time.Second, "the daemon to hold its lease", func() bool {
		return leaseHolder(t, system, "driftd-"+ns) != ""
	})
	cloud.terminate(t, ids["pool-md-0-m1"])
	before := machineUIDs(t, ns)
	code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", system, "--provider", "aws"}, source...)...)
	if code != 1 || !strings.Contains(errOut, "holds the lease") {
		t.Errorf("run --once beside a daemon: exit %d, want 1 saying another driftd holds the lease\n%s%s", code, out, errOut)
	}
	if after := machineUIDs(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("Machines changed: %v → %v", before, after)
	}
}

func leaseHolder(tb testing.TB, ns, name string) string {
	tb.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("coordination.k8s.io/v1")
	u.SetKind("Lease")
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return ""
	}
	h, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity")
	return h
}
