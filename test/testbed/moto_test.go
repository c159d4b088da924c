package testbed

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/go-cmp/cmp"

	"github.com/driftd/driftd/internal/testenv"
)

const capaClusterTag = "sigs.k8s.io/cluster-api-provider-aws/cluster/prod-eu"

func TestMotoServesCAPATaggedInstancesPageByPage(t *testing.T) {
	ctx := context.Background()
	moto := testenv.RequireMoto(t)
	cfg, err := moto.AWSConfig(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	var describeCalls int
	ec2c := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		o.APIOptions = append(o.APIOptions, countCalls("DescribeInstances", &describeCalls))
	})

	image := registerImage(t, ec2c)
	var launched []string
	for i, role := range []string{"control-plane", "node", "node"} {
		name := fmt.Sprintf("prod-eu-%d", i)
		out, err := ec2c.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageId: aws.String(image), InstanceType: ec2types.InstanceTypeM5Large,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []ec2types.TagSpecification{{
				ResourceType: ec2types.ResourceTypeInstance,
				Tags: []ec2types.Tag{
					{Key: aws.String(capaClusterTag), Value: aws.String("owned")},
					{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/role"), Value: aws.String(role)},
					{Key: aws.String("MachineName"), Value: aws.String("fleet/" + name)},
					{Key: aws.String("Name"), Value: aws.String(name)},
				},
			}},
		})
		if err != nil {
			t.Fatalf("RunInstances: %v", err)
		}
		launched = append(launched, aws.ToString(out.Instances[0].InstanceId))
	}
	// An instance of another cluster must not be listed.
	if _, err := ec2c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
			{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/cluster/other"), Value: aws.String("owned")},
		}}},
	}); err != nil {
		t.Fatal(err)
	}

	pages := ec2.NewDescribeInstancesPaginator(ec2c, &ec2.DescribeInstancesInput{
		Filters:    []ec2types.Filter{{Name: aws.String("tag:" + capaClusterTag), Values: []string{"owned"}}},
		MaxResults: aws.Int32(1),
	})
	var listed []string
	roles := map[string]int{}
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("DescribeInstances: %v", err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				listed = append(listed, aws.ToString(inst.InstanceId))
				for _, tag := range inst.Tags {
					if aws.ToString(tag.Key) == "sigs.k8s.io/cluster-api-provider-aws/role" {
						roles[aws.ToString(tag.Value)]++
					}
				}
			}
		}
	}
	sort.Strings(launched)
	sort.Strings(listed)
	if diff := cmp.Diff(launched, listed); diff != "" {
		t.Errorf("instances listed by the cluster tag (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"control-plane": 1, "node": 2}, roles); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
	if describeCalls < 3 {
		t.Errorf("DescribeInstances called %d times for 3 instances at a page size of 1; pagination was not exercised", describeCalls)
	}

	// Auto Scaling: a group created and read back.
	asg := autoscaling.NewFromConfig(cfg)
	if _, err := ec2c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("prod-eu-pool-0"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(image), InstanceType: ec2types.InstanceTypeM5Large},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("prod-eu-pool-0"),
		MinSize:              aws.Int32(1), MaxSize: aws.Int32(5), DesiredCapacity: aws.Int32(2),
		AvailabilityZones: []string{"eu-west-1a"},
		LaunchTemplate:    &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("prod-eu-pool-0")},
	}); err != nil {
		t.Fatalf("CreateAutoScalingGroup: %v", err)
	}
	groups, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{"prod-eu-pool-0"},
	})
	if err != nil {
		t.Fatalf("DescribeAutoScalingGroups: %v", err)
	}
	if len(groups.AutoScalingGroups) != 1 {
		t.Fatalf("got %d groups, want 1", len(groups.AutoScalingGroups))
	}
	g := groups.AutoScalingGroups[0]
	got := [3]int32{aws.ToInt32(g.MinSize), aws.ToInt32(g.DesiredCapacity), aws.ToInt32(g.MaxSize)}
	if got != [3]int32{1, 2, 5} {
		t.Errorf("group min/desired/max = %v, want [1 2 5]", got)
	}
	if len(g.Instances) != 2 {
		t.Errorf("group has %d instances, want its desired 2", len(g.Instances))
	}
}

// registerImage registers an AMI to launch, as moto accepts only images it knows.
func registerImage(tb testing.TB, c *ec2.Client) string {
	tb.Helper()
	out, err := c.DescribeImages(context.Background(), &ec2.DescribeImagesInput{})
	if err != nil {
		tb.Fatalf("DescribeImages: %v", err)
	}
	if len(out.Images) == 0 {
		tb.Fatal("moto offers no images")
	}
	return aws.ToString(out.Images[0].ImageId)
}

// countCalls counts the calls of one operation through the SDK's middleware stack.
func countCalls(operation string, n *int) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("countCalls",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if middleware.GetOperationName(ctx) == operation {
					*n++
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
}
