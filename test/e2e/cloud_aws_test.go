package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const awsCluster = `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: aws1
spec:
  infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSCluster, name: aws1}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSCluster
metadata:
  name: aws1
spec:
  region: eu-west-1
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachinePool
metadata:
  name: pool-0
spec:
  clusterName: aws1
  replicas: 2
  template:
    spec:
      clusterName: aws1
      bootstrap: {dataSecretName: pool-0}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachinePool, name: pool-0}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachinePool
metadata:
  name: pool-0
spec:
  minSize: 1
  maxSize: 5
  awsLaunchTemplate:
    instanceType: m5.large
`

// awsCloud is moto with the SDK's standard variables pointing at it: driftd needs nothing more.
type awsCloud struct {
	moto *testenv.Moto
	ec2  *ec2.Client
	asg  *autoscaling.Client
	ami  *string
}

func newAWSCloud(t *testing.T) *awsCloud {
	t.Helper()
	m := testenv.RequireMoto(t)
	m.UseFromEnvironment(t)
	cfg, err := m.AWSConfig(context.Background(), "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	c := &awsCloud{moto: m, ec2: ec2.NewFromConfig(cfg), asg: autoscaling.NewFromConfig(cfg)}
	images, err := c.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("no image: %v", err)
	}
	c.ami = images.Images[0].ImageId
	return c
}

// launch starts an instance tagged for cluster as CAPA tags them and returns its providerID.
func (c *awsCloud) launch(t *testing.T, cluster, machine string) (id, providerID string) {
	t.Helper()
	return c.launchWith(t, c.ec2, cluster, machine)
}

// launchWith is launch through another account's client.
func (c *awsCloud) launchWith(t *testing.T, client *ec2.Client, cluster, machine string) (id, providerID string) {
	t.Helper()
	out, err := client.RunInstances(context.Background(), &ec2.RunInstancesInput{
		ImageId: c.ami, InstanceType: ec2types.InstanceTypeM5Large, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		Placement: &ec2types.Placement{AvailabilityZone: aws.String("eu-west-1a")},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
			{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/cluster/" + cluster), Value: aws.String("owned")},
			{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/role"), Value: aws.String("node")},
			{Key: aws.String("MachineName"), Value: aws.String(machine)},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id = aws.ToString(out.Instances[0].InstanceId)
	return id, "aws:///eu-west-1a/" + id
}

func (c *awsCloud) do(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestCloudDriftOnAWS(t *testing.T) {
	ctx := context.Background()
	ns := "cloud-aws"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("aws1.yaml", awsCluster).Files())
	args := append(drv.Args(t, repo.Dir, "cloud-aws"), "--provider", "aws")
	drv.RunOnce(t, ns, args...)

	ids := map[string]string{}
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("aws1-md-0-m%d", i)
		id, pid := cloud.launch(t, "aws1", ns+"/"+name)
		ids[name] = id
		env.ProvisionMachine(t, ns, "aws1", "md-0", name, pid, gvkAWSMachine, map[string]any{"instanceType": "m5.large"})
	}
	// The MachinePool's Auto Scaling group, as CAPA created it.
	cloud.do(t, "CreateLaunchTemplate", func() error {
		_, err := cloud.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("pool-0"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: cloud.ami, InstanceType: ec2types.InstanceTypeM5Large}})
		return err
	}())
	cloud.do(t, "CreateAutoScalingGroup", func() error {
		_, err := cloud.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
			AutoScalingGroupName: aws.String("pool-0"), MinSize: aws.Int32(1), MaxSize: aws.Int32(5), DesiredCapacity: aws.Int32(2),
			AvailabilityZones: []string{"eu-west-1a"}, LaunchTemplate: &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("pool-0")},
			Tags: []asgtypes.Tag{{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/cluster/aws1"), Value: aws.String("owned"), PropagateAtLaunch: aws.Bool(false)}},
		})
		return err
	}())

	if code, doc, stderr := drv.Plan(t, args...); code != 0 {
		t.Fatalf("plan of a fleet equal to its cloud: exit %d, findings %+v\n%s", code, doc.Findings, stderr)
	}

	t.Run("terminated instance: InstanceMissing, MachineSet-owned Machine deleted", func(t *testing.T) {
		_, err := cloud.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["aws1-md-0-m1"]}})
		cloud.do(t, "TerminateInstances", err)
		_, doc, _ := drv.Plan(t, args...)
		f := doc.Finding("Machine", "aws1-md-0-m1")
		if f == nil || f.Class != diff.ClassInstanceMissing || f.Layer != diff.LayerCloud || f.Action != diff.ActionReplace || f.Instance == nil || f.Instance.ID != ids["aws1-md-0-m1"] {
			t.Fatalf("finding = %+v, want InstanceMissing to replace with the instance named", f)
		}
		drv.RunOnce(t, ns, args...)
		if s := env.MachineState(t, ns, "aws1-md-0-m1"); s != "gone" && s != "deleting" {
			t.Errorf("Machine state %q: without a MachineHealthCheck a MachineSet-owned Machine is deleted", s)
		}
		if !driver.HasEvent(drv.Events(t, ns, "Machine", "aws1-md-0-m1"), "MachineReplacementRequested") {
			t.Error("no MachineReplacementRequested Event")
		}
	})

	t.Run("with a MachineHealthCheck: annotated, and a second waits for the budget", func(t *testing.T) {
		healthCheck(t, ns, "aws1", "md-0")
		// One after the other: two of five gone at once would trip the breaker (see cloud_breaker_test.go).
		_, err := cloud.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["aws1-md-0-m2"]}})
		cloud.do(t, "TerminateInstances", err)
		drv.RunOnce(t, ns, args...)
		if s := env.MachineState(t, ns, "aws1-md-0-m2"); s != "remediate" {
			t.Fatalf("m2 state %q, want annotated with %s", s, diff.AnnotationRemediateMachine)
		}
		_, err = cloud.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["aws1-md-0-m3"]}})
		cloud.do(t, "TerminateInstances", err)
		drv.RunOnce(t, ns, args...)
		if s := env.MachineState(t, ns, "aws1-md-0-m3"); s != "ok" {
			t.Fatalf("m3 state %q: a second replacement in the same MachineDeployment must wait", s)
		}
		blocked := false
		for _, e := range drv.Events(t, ns, "Machine", "aws1-md-0-m3") {
			blocked = blocked || (strings.HasPrefix(e, "CorrectionBlocked:") && strings.Contains(e, "budget"))
		}
		if !blocked {
			t.Errorf("m3 Events %q lack CorrectionBlocked for the budget", drv.Events(t, ns, "Machine", "aws1-md-0-m3"))
		}
		deleteMachine(t, ns, "aws1-md-0-m2") // the MachineHealthCheck remediated it
		drv.RunOnce(t, ns, args...)
		if s := env.MachineState(t, ns, "aws1-md-0-m3"); s != "remediate" {
			t.Errorf("m3 state %q once m2 is gone, want annotated", s)
		}
		deleteMachine(t, ns, "aws1-md-0-m3")
	})

	t.Run("stopped instance: InstanceStopped", func(t *testing.T) {
		_, err := cloud.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{ids["aws1-md-0-m4"]}})
		cloud.do(t, "StopInstances", err)
		_, doc, _ := drv.Plan(t, args...)
		if f := doc.Finding("Machine", "aws1-md-0-m4"); f == nil || f.Class != diff.ClassInstanceStopped {
			t.Errorf("finding = %+v, want InstanceStopped", f)
		}
	})

	t.Run("instance type changed: InstanceMismatch naming both types", func(t *testing.T) {
		id := ids["aws1-md-0-m5"]
		_, err := cloud.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}})
		cloud.do(t, "StopInstances", err)
		_, err = cloud.ec2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(id), InstanceType: &ec2types.AttributeValue{Value: aws.String("m5.2xlarge")}})
		cloud.do(t, "ModifyInstanceAttribute", err)
		_, err = cloud.ec2.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
		cloud.do(t, "StartInstances", err)
		_, doc, _ := drv.Plan(t, args...)
		f := doc.Finding("Machine", "aws1-md-0-m5")
		if f == nil || f.Class != diff.ClassInstanceMismatch || len(f.Fields) != 1 || f.Fields[0].Path != "/spec/instanceType" ||
			f.Fields[0].Desired != "m5.large" || f.Fields[0].Live != "m5.2xlarge" {
			t.Errorf("finding = %+v, want InstanceMismatch m5.large (desired) vs m5.2xlarge (live)", f)
		}
	})

	t.Run("an extra owned instance is reported, never terminated", func(t *testing.T) {
		id, _ := cloud.launch(t, "aws1", "")
		graceArgs := append(append([]string{}, args...), "--unmanaged-grace", "0s")
		_, doc, _ := drv.Plan(t, graceArgs...)
		found := false
		for _, f := range doc.Findings {
			found = found || (f.Class == diff.ClassUnmanagedInstance && f.Instance != nil && f.Instance.ID == id && f.Action == diff.ActionReport)
		}
		if !found {
			t.Errorf("findings %+v lack UnmanagedInstance %s", doc.Findings, id)
		}
		if _, doc, _ := drv.Plan(t, args...); len(doc.Findings) > 0 {
			for _, f := range doc.Findings {
				if f.Class == diff.ClassUnmanagedInstance {
					t.Errorf("a just-launched instance was reported within the default grace period: %+v", f)
				}
			}
		}
		drv.RunOnce(t, ns, graceArgs...)
		out, err := cloud.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		cloud.do(t, "DescribeInstances", err)
		if st := out.Reservations[0].Instances[0].State.Name; st != ec2types.InstanceStateNameRunning {
			t.Errorf("the unmanaged instance is %s; driftd must only report it", st)
		}
	})

	t.Run("Auto Scaling group resized: NodePoolMismatch, restored only with --cloud-writes", func(t *testing.T) {
		_, err := cloud.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("pool-0"), DesiredCapacity: aws.Int32(4)})
		cloud.do(t, "UpdateAutoScalingGroup", err)
		_, doc, _ := drv.Plan(t, args...)
		f := doc.Finding("MachinePool", "pool-0")
		if f == nil || f.Class != diff.ClassNodePoolMismatch || f.Action != diff.ActionReport || len(f.Fields) != 1 || f.Fields[0].Desired != float64(2) || f.Fields[0].Live != float64(4) {
			t.Fatalf("finding = %+v, want NodePoolMismatch desired 2 live 4, reported", f)
		}
		drv.RunOnce(t, ns, append(append([]string{}, args...), "--cloud-writes")...)
		groups, err := cloud.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"pool-0"}})
		cloud.do(t, "DescribeAutoScalingGroups", err)
		if got := aws.ToInt32(groups.AutoScalingGroups[0].DesiredCapacity); got != 2 {
			t.Errorf("desired capacity %d after --cloud-writes, want 2", got)
		}
	})

	t.Run("detect mode writes nothing", func(t *testing.T) {
		_, err := cloud.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["aws1-md-0-m6"]}})
		cloud.do(t, "TerminateInstances", err)
		_, err = cloud.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("pool-0"), DesiredCapacity: aws.Int32(3)})
		cloud.do(t, "UpdateAutoScalingGroup", err)
		out := drv.RunOnce(t, ns, append(append([]string{}, args...), "--mode", "detect", "--cloud-writes")...)
		if !strings.Contains(out, "InstanceMissing") {
			t.Errorf("detect mode did not report the missing instance:\n%s", out)
		}
		if s := env.MachineState(t, ns, "aws1-md-0-m6"); s != "ok" {
			t.Errorf("m6 state %q in detect mode", s)
		}
		groups, err := cloud.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"pool-0"}})
		cloud.do(t, "DescribeAutoScalingGroups", err)
		if got := aws.ToInt32(groups.AutoScalingGroups[0].DesiredCapacity); got != 3 {
			t.Errorf("detect mode restored the group to %d", got)
		}
	})

	t.Run("cloud unavailable: InventoryUnavailable, no InstanceMissing, no Machine touched", func(t *testing.T) {
		before := machineResourceVersions(t, ns)
		cloud.moto.Stop()
		code, out, errOut := drv.Exec(ctx, append([]string{"run", "--once", "--namespace", ns}, args...)...)
		if code != 1 || !strings.Contains(errOut, "aws inventory unavailable") {
			t.Errorf("run --once with the cloud down: exit %d\n%s", code, errOut)
		}
		if strings.Contains(out, "InstanceMissing") {
			t.Errorf("InstanceMissing reported while the inventory is unavailable:\n%s", out)
		}
		if after := machineResourceVersions(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("Machines changed while the inventory was unavailable: %v -> %v", before, after)
		}
		if !driver.HasEvent(drv.StatusEvents(t, ns), "InventoryUnavailable") {
			t.Error("no InventoryUnavailable Event on the status ConfigMap")
		}
	})
}

func machineResourceVersions(tb testing.TB, ns string) map[string]string {
	return drv.ResourceVersions(tb, ns, diff.GVKMachine)
}
