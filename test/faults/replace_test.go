package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

var gvkAWSMachine = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachine"}

// TestAKillRightAfterAMachineWasMarkedForReplacement: two of eight instances of a pool are gone
// (under the breaker's threshold); driftd marks the first Machine for its MachineHealthCheck and
// is killed with SIGKILL right after. The restarted driftd sees that replacement in flight (the
// mark is on the Machine) and does not mark the second one of the same pool: the budget holds
// across the kill.
func TestAKillRightAfterAMachineWasMarkedForReplacement(t *testing.T) {
	ctx := context.Background()
	ns := "fault-kill-replace"
	ec2c, ids := eightMachines(t, ns)
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	args := daemonArgs(t, ns, repo, proxy, "--provider", "aws", "--cloud-interval", "1s", "--interval", "1h", "--health-probe-bind-address", "0")
	first := spawnImage(t, args...)
	testenv.Eventually(t, 90*time.Second, "the first complete cycle", func() bool { return cycleDone(first) })
	testenv.Eventually(t, 30*time.Second, "a cloud cycle over the eight instances", func() bool {
		return strings.Count(first.Out.String(), "Cloud cycle done") >= 2
	})
	proxy.Reset()
	if _, err := ec2c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids["prod-md-0-m1"], ids["prod-md-0-m2"]}}); err != nil {
		t.Fatal(err)
	}
	marked := func() []string { return markedForReplacement(t, ns, "prod-md-0-m1", "prod-md-0-m2") }
	testenv.Eventually(t, 60*time.Second, "a Machine marked for replacement", func() bool { return len(marked()) > 0 })
	first.Kill()
	t.Logf("writes of the killed driftd since the instances were terminated:\n  %s", strings.Join(writes(proxy), "\n  "))
	if got := marked(); len(got) != 1 {
		t.Fatalf("marked before the kill: %v, want one (the budget is one per pool)", got)
	}

	proxy.Reset()
	second := spawnImage(t, args...)
	testenv.Eventually(t, 90*time.Second, "three cloud cycles of the restarted driftd", func() bool {
		return strings.Count(second.Out.String(), "Cloud cycle done") >= 3
	})
	t.Logf("writes of the restarted driftd:\n  %s", strings.Join(writes(proxy), "\n  "))
	if !strings.Contains(second.Out.String(), `"drifted": 2`) {
		t.Fatalf("the restarted driftd's cloud cycles did not find the two gone instances; the test proved nothing:\n%s", second.Out.String())
	}
	if got := marked(); len(got) != 1 {
		t.Errorf("marked after the restart: %v, want still one: the replacement in flight holds the pool's budget", got)
	}
	if bad := unintended(proxy, bookkeeping(system(ns))); len(bad) > 0 {
		t.Errorf("the restarted driftd wrote %v", bad)
	}
}

// eightMachines starts moto (the SDK's standard variables point at it), launches eight instances
// of cluster prod's pool md-0 in ns and provisions their Machines (Running, with a Node), as
// CAPA and Cluster API would; it returns the EC2 client and the instance of each Machine.
func eightMachines(t *testing.T, ns string) (*ec2.Client, map[string]string) {
	t.Helper()
	ctx := context.Background()
	moto := testenv.RequireMoto(t)
	moto.UseFromEnvironment(t)
	cfg, err := moto.AWSConfig(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	ec2c := ec2.NewFromConfig(cfg)
	images, err := ec2c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("no image in moto: %v", err)
	}
	drv.Namespace(t, ns)
	ids := map[string]string{}
	for i := 1; i <= 8; i++ {
		name := fmt.Sprintf("prod-md-0-m%d", i)
		out, err := ec2c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: images.Images[0].ImageId, InstanceType: ec2types.InstanceTypeM6iLarge,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), Placement: &ec2types.Placement{AvailabilityZone: aws.String("eu-west-1a")},
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
				{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/cluster/prod"), Value: aws.String("owned")},
				{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/role"), Value: aws.String("node")},
			}}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = aws.ToString(out.Instances[0].InstanceId)
		env.ProvisionMachine(t, ns, "prod", "md-0", name, "aws:///eu-west-1a/"+ids[name], gvkAWSMachine, map[string]any{"instanceType": "m6i.large"})
	}
	return ec2c, ids
}

// markedForReplacement are the Machines of names in ns marked for their MachineHealthCheck.
func markedForReplacement(t *testing.T, ns string, names ...string) []string {
	t.Helper()
	var out []string
	for _, name := range names {
		if env.MachineState(t, ns, name) == "remediate" {
			out = append(out, name)
		}
	}
	return out
}
