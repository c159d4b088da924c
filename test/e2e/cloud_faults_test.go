package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/vmware/govmomi/object"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestEC2ThrottlingJudgesNothingFalsely: EC2 throttles DescribeInstances, or Auto Scaling
// DescribeAutoScalingGroups (RequestLimitExceeded), while one instance of four is really gone.
// Throttled for good, the inventory is unavailable: no InstanceMissing, no Machine touched.
// Throttled twice, the SDK's retries get through and exactly the instance that is gone is
// missing — no other.
func TestEC2ThrottlingJudgesNothingFalsely(t *testing.T) {
	ctx := context.Background()
	ns := "cloud-throttled"
	cloud := newAWSCloud(t)
	cluster := strings.Join(strings.SplitAfter(awsCluster, "---\n")[:2], "")
	cluster = strings.TrimSuffix(cluster, "---\n")
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("aws1.yaml", cluster).Files())
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "aws")
	drv.RunOnce(t, ns, args...)
	ids := map[string]string{}
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("aws1-md-0-m%d", i)
		id, pid := cloud.launch(t, "aws1", ns+"/"+name)
		ids[name] = id
		env.ProvisionMachine(t, ns, "aws1", "md-0", name, pid, gvkAWSMachine, map[string]any{"instanceType": "m5.large"})
	}
	_, err := cloud.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["aws1-md-0-m1"]}})
	cloud.do(t, "TerminateInstances", err)

	for _, action := range []string{"DescribeInstances", "DescribeAutoScalingGroups"} {
		throttledFor(t, ns, cloud, action, args)
	}
}

// throttledFor runs the fleet of ns with args while action is throttled, for good and then twice.
func throttledFor(t *testing.T, ns string, cloud *awsCloud, action string, args []string) {
	ctx := context.Background()
	t.Run(action+" throttled for good: unavailable, nothing judged, nothing written", func(t *testing.T) {
		throttled := cloud.moto.Faults(t, http.StatusServiceUnavailable, "RequestLimitExceeded", -1, testenv.Action(action)).Hits
		before := machineResourceVersions(t, ns)
		code, out, errOut := drv.Exec(ctx, append([]string{"run", "--once", "--namespace", ns}, args...)...)
		if throttled() == 0 {
			t.Fatal("nothing was throttled; the test proved nothing")
		}
		if code != 1 || !strings.Contains(errOut, "aws inventory unavailable") {
			t.Errorf("run --once while throttled: exit %d, want 1 naming the unavailable inventory\n%s", code, errOut)
		}
		if strings.Contains(out, "InstanceMissing") {
			t.Errorf("InstanceMissing reported while EC2 throttles:\n%s", out)
		}
		if after := machineResourceVersions(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("Machines written while EC2 throttles: %v -> %v", before, after)
		}
		if !driver.HasEvent(drv.StatusEvents(t, ns), "InventoryUnavailable") {
			t.Error("no InventoryUnavailable Event on the status ConfigMap")
		}
	})

	t.Run(action+" throttled twice: retried, and only what is gone is missing", func(t *testing.T) {
		throttled := cloud.moto.Faults(t, http.StatusServiceUnavailable, "RequestLimitExceeded", 2, testenv.Action(action)).Hits
		code, doc, stderr := drv.Plan(t, args...)
		if throttled() != 2 {
			t.Fatalf("throttled %d requests, want 2", throttled())
		}
		var missing []string
		for _, f := range doc.Findings {
			if f.Class == diff.ClassInstanceMissing {
				missing = append(missing, f.Object.Name)
			}
		}
		if code != 2 || fmt.Sprint(missing) != "[aws1-md-0-m1]" {
			t.Errorf("plan after two throttled answers: exit %d, missing %v, want 2 and [aws1-md-0-m1]\n%s", code, missing, stderr)
		}
	})
}

// TestAVCenterSessionEndingMidRetrieveJudgesNothing: vCenter ends driftd's session between the
// container view and the retrieve of its VMs (a session timeout, or an administrator terminating
// it), while one VM of three is really gone. The retrieve meets NotAuthenticated: the inventory is
// unavailable, no Machine is judged or written. With sessions lasting again, the next run logs in
// anew and finds exactly the VM that is gone.
func TestAVCenterSessionEndingMidRetrieveJudgesNothing(t *testing.T) {
	ctx := context.Background()
	ns := "cloud-vcenter-session"
	sim, args, byName := vsphereMachines(t, ns, 3)
	c, err := sim.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gone := object.NewVirtualMachine(c.Client, byName["vs1-md-0-m0"].Reference())
	if task, err := gone.PowerOff(ctx); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("power off: %v", err)
	}
	if task, err := gone.Destroy(ctx); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("destroy: %v", err)
	}

	sim.ExpireSessions(true)
	before := machineResourceVersions(t, ns)
	code, out, errOut := drv.Exec(ctx, append([]string{"run", "--once", "--namespace", ns}, args...)...)
	if code != 1 || !strings.Contains(errOut, "NotAuthenticated") {
		t.Errorf("run --once with the session ended mid-retrieve: exit %d, want 1 naming NotAuthenticated\n%s\n%s", code, errOut, out)
	}
	if strings.Contains(out, "InstanceMissing") || strings.Contains(errOut, "InstanceMissing") {
		t.Errorf("InstanceMissing reported from a retrieve that failed:\n%s", out)
	}
	if after := machineResourceVersions(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("Machines written with the session gone: %v -> %v", before, after)
	}

	sim.ExpireSessions(false)
	code, doc, stderr := drv.Plan(t, args...)
	var missing []string
	for _, f := range doc.Findings {
		if f.Class == diff.ClassInstanceMissing {
			missing = append(missing, f.Object.Name)
		}
	}
	if code != 2 || fmt.Sprint(missing) != "[vs1-md-0-m0]" {
		t.Errorf("plan with sessions lasting again: exit %d, missing %v, want 2 and [vs1-md-0-m0]\n%s", code, missing, stderr)
	}
}
