package aws

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/testenv"
)

// cloud is moto with the SDK's standard variables pointing at it, as an emulator needs no more.
func cloud(tb testing.TB) *testenv.Moto {
	tb.Helper()
	m := testenv.RequireMoto(tb)
	m.UseFromEnvironment(tb)
	return m
}

// launch starts count instances of a cluster in region with CAPA's tags, one reservation each
// as CAPA launches them, and returns their IDs.
func launch(tb testing.TB, m *testenv.Moto, region, cluster, role string, count int32, extra ...ec2types.Tag) []string {
	tb.Helper()
	cfg, err := m.AWSConfig(context.Background(), region)
	if err != nil {
		tb.Fatal(err)
	}
	return launchWith(tb, cfg, region, cluster, role, count, extra...)
}

func launchWith(tb testing.TB, cfg aws.Config, region, cluster, role string, count int32, extra ...ec2types.Tag) []string {
	tb.Helper()
	ctx := context.Background()
	c := ec2.NewFromConfig(cfg)
	images, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		tb.Fatalf("no image to launch: %v", err)
	}
	var ids []string
	for range count {
		out, err := runInstance(ctx, c, images.Images[0].ImageId, region+"a", cluster, role, extra...)
		if err != nil {
			tb.Fatalf("RunInstances: %v", err)
		}
		ids = append(ids, aws.ToString(out.Instances[0].InstanceId))
	}
	return ids
}

func TestSnapshotFindsTaggedInstancesAndGroupsAcrossRegions(t *testing.T) {
	ctx := context.Background()
	m := cloud(t)
	prod := launch(t, m, "eu-west-1", "prod", "node", 12, ec2types.Tag{Key: aws.String(MachineNameTag), Value: aws.String("fleet/prod-md-0-abc")})
	launch(t, m, "eu-west-1", "prod", "control-plane", 1)
	launch(t, m, "us-east-1", "edge", "node", 3)
	launch(t, m, "eu-west-1", "not-in-scope", "node", 4)

	// An Auto Scaling group of prod's AWSMachinePool.
	cfg, _ := m.AWSConfig(ctx, "eu-west-1")
	images, _ := ec2.NewFromConfig(cfg).DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if _, err := ec2.NewFromConfig(cfg).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("prod-pool"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: images.Images[0].ImageId, InstanceType: ec2types.InstanceTypeM5Large},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := autoscaling.NewFromConfig(cfg).CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String("prod-pool"), MinSize: aws.Int32(1), MaxSize: aws.Int32(6), DesiredCapacity: aws.Int32(2),
		AvailabilityZones: []string{"eu-west-1a"},
		LaunchTemplate:    &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("prod-pool")},
		Tags:              []asgtypes.Tag{{Key: aws.String(ClusterTagPrefix + "prod"), Value: aws.String("owned"), PropagateAtLaunch: aws.Bool(true)}},
	}); err != nil {
		t.Fatal(err)
	}

	p := New(Options{PageSize: 5})
	snap, err := p.Snapshot(ctx, []infra.Cluster{
		{Name: "prod", Namespace: "fleet", Region: "eu-west-1"},
		{Name: "edge", Namespace: "fleet", Region: "us-east-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Complete {
		t.Fatalf("snapshot incomplete: %v", snap.Errors)
	}
	perCluster := map[string]int{}
	for _, i := range snap.Instances {
		perCluster[i.Cluster]++
	}
	// prod: 12 nodes + 1 control plane + the group's 2 instances (they carry the propagated tag).
	if diff := cmp.Diff(map[string]int{"fleet/prod": 15, "fleet/edge": 3}, perCluster); diff != "" {
		t.Errorf("instances per cluster (-want +got):\n%s", diff)
	}
	var got infra.Instance
	for _, i := range snap.Instances {
		if i.ID == prod[0] {
			got = i
		}
	}
	if got.MachineName != "fleet/prod-md-0-abc" || got.Role != "node" || got.Type != "m5.large" || got.State != infra.StateRunning ||
		got.Zone != "eu-west-1a" || got.ProviderID != "aws:///eu-west-1a/"+prod[0] || got.LaunchTime.IsZero() {
		t.Errorf("instance %s = %+v", prod[0], got)
	}
	if len(snap.Pools) != 1 || snap.Pools[0].Name != "prod-pool" || snap.Pools[0].Cluster != "fleet/prod" ||
		snap.Pools[0].Desired != 2 || snap.Pools[0].Min != 1 || snap.Pools[0].Max != 6 || len(snap.Pools[0].Members) != 2 {
		t.Errorf("pools = %+v", snap.Pools)
	}
	// 15 instances at 5 a page in eu-west-1 and 3 in us-east-1: 3 + 1 pages. (moto pages by
	// reservation, and the group launched its 2 together; a final empty page may follow a full one.)
	if n := snap.Calls["DescribeInstances"]; n < 4 || n > 5 {
		t.Errorf("DescribeInstances calls = %d, want the 4 pages (5 with a trailing empty page)", n)
	}
}

// TestSnapshotListsARegionOfManyClustersOnce: past the 200 clusters one filter takes, a region's
// instances come in one listing of pages (not one per batch of names), and an instance of a CAPA
// cluster outside the fleet, read with them, is not in the snapshot.
func TestSnapshotListsARegionOfManyClustersOnce(t *testing.T) {
	m := cloud(t)
	clusters := make([]infra.Cluster, maxFilterValues+1)
	for i := range clusters {
		clusters[i] = infra.Cluster{Name: fmt.Sprintf("c%03d", i), Namespace: "fleet", Region: "eu-west-1"}
	}
	launchFleet(t, m, clusters, 1)
	outsider := launch(t, m, "eu-west-1", "not-in-the-fleet", "node", 1)

	snap, err := New(Options{}).Snapshot(context.Background(), clusters)
	if err != nil || !snap.Complete {
		t.Fatalf("snapshot: %v %v", err, snap.Errors)
	}
	perCluster := map[string]int{}
	for _, i := range snap.Instances {
		perCluster[i.Cluster]++
		if i.ID == outsider[0] {
			t.Errorf("the outsider's instance %s is in the snapshot as %q", i.ID, i.Cluster)
		}
	}
	for _, c := range clusters {
		if perCluster[c.Key()] != 1 {
			t.Errorf("cluster %s has %d instances, want 1", c.Key(), perCluster[c.Key()])
		}
	}
	if len(snap.Instances) != len(clusters) {
		t.Errorf("%d instances, want %d", len(snap.Instances), len(clusters))
	}
	// 202 instances fit a page of 1,000: one call, where a call per batch of 200 names made two.
	if n := snap.Calls["DescribeInstances"]; n != 1 {
		t.Errorf("DescribeInstances calls = %d, want 1", n)
	}
}

// TestSnapshotReadsEachClusterWithItsOwnAccount: instances in account B are seen through an
// AWSClusterRoleIdentity's role, and not at all with the default chain's account A — where, without
// identities, a cluster in B would look empty.
func TestSnapshotReadsEachClusterWithItsOwnAccount(t *testing.T) {
	m := cloud(t)
	const roleB = "arn:aws:iam::222222222222:role/driftd-reader"
	cfgB, err := m.AWSConfigAs(context.Background(), "eu-west-1", roleB)
	if err != nil {
		t.Fatal(err)
	}
	inB := launchWith(t, cfgB, "eu-west-1", "tenant", "node", 2)
	launch(t, m, "eu-west-1", "home", "node", 1)

	p := New(Options{})
	viaRole := &infra.AWSIdentity{Key: "AWSClusterRoleIdentity/account-b", Roles: []infra.AssumeRole{{ARN: roleB, ExternalID: "fleet-42"}}}
	snap, err := p.Snapshot(context.Background(), []infra.Cluster{
		{Name: "tenant", Namespace: "tenants", Region: "eu-west-1", AWS: viaRole},
		{Name: "home", Namespace: "fleet", Region: "eu-west-1"},
	})
	if err != nil || len(snap.Unavailable) > 0 {
		t.Fatalf("snapshot: %v %v", err, snap.Unavailable)
	}
	got := map[string][]string{}
	for _, i := range snap.Instances {
		got[i.Cluster] = append(got[i.Cluster], i.ID)
	}
	sort.Strings(got["tenants/tenant"])
	sort.Strings(inB)
	if diff := cmp.Diff(inB, got["tenants/tenant"]); diff != "" || len(got["fleet/home"]) != 1 {
		t.Errorf("instances per cluster %v; the tenant's (-want +got):\n%s", got, diff)
	}
	if snap.Calls["AssumeRole"] != 1 {
		t.Errorf("AssumeRole calls = %d, want 1", snap.Calls["AssumeRole"])
	}

	// Read with account A's keys, the tenant's instances are not there at all.
	snap, _ = p.Snapshot(context.Background(), []infra.Cluster{{Name: "tenant", Namespace: "tenants", Region: "eu-west-1"}})
	if len(snap.Instances) != 0 {
		t.Errorf("account A sees %d of account B's instances", len(snap.Instances))
	}
}

// TestAFailureOnTheSecondPage: DescribeInstances answers its first page and fails on the second
// (an HTTP 500, every try). The snapshot is not the first page passed off as the region: both
// clusters of the region are unavailable, so none of their Machines is judged (a Machine whose
// instance was on the second page would otherwise be taken for missing). Failing once, the
// retry reads every page.
func TestAFailureOnTheSecondPage(t *testing.T) {
	ctx := context.Background()
	m := cloud(t)
	launch(t, m, "eu-west-1", "prod", "node", 8)
	launch(t, m, "eu-west-1", "edge", "node", 4)
	clusters := []infra.Cluster{{Name: "prod", Namespace: "fleet", Region: "eu-west-1"}, {Name: "edge", Namespace: "fleet", Region: "eu-west-1"}}
	secondPage := func(body []byte) bool {
		return testenv.Action("DescribeInstances")(body) && bytes.Contains(body, []byte("NextToken="))
	}
	snapshot := func(left int) (*infra.Snapshot, *testenv.AWSFaults, error) {
		f := m.Faults(t, http.StatusInternalServerError, "InternalError", left, secondPage)
		snap, err := New(Options{PageSize: 5, MaxAttempts: 2}).Snapshot(ctx, clusters)
		return snap, f, err
	}
	snap, f, err := snapshot(-1)
	if f.Hits() == 0 {
		t.Fatalf("no second page was asked for; the test proved nothing (%v, %+v)", err, snap)
	}
	if err == nil || !strings.Contains(err.Error(), "DescribeInstances") || !strings.Contains(err.Error(), "InternalError") {
		t.Errorf("snapshot with its second page failing: error %v, want one naming DescribeInstances and InternalError", err)
	}
	if snap.Complete || len(snap.Unavailable) != 2 {
		t.Errorf("snapshot with its second page failing: complete %v, unavailable %v; want incomplete, both clusters unavailable", snap.Complete, snap.Unavailable)
	}

	snap, f, err = snapshot(1)
	if err != nil || !snap.Complete || len(snap.Unavailable) != 0 || len(snap.Instances) != 12 || f.Hits() != 1 {
		t.Errorf("second page failing once: error %v, complete %v, unavailable %v, %d instances, %d failed; want every page read: 12 instances",
			err, snap.Complete, snap.Unavailable, len(snap.Instances), f.Hits())
	}
}

func TestSnapshotOfAStoppedCloudFails(t *testing.T) {
	m := cloud(t)
	launch(t, m, "eu-west-1", "prod", "node", 1)
	m.Stop()
	p := New(Options{MaxAttempts: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := p.Snapshot(ctx, []infra.Cluster{{Name: "prod", Region: "eu-west-1"}})
	if err == nil {
		t.Fatal("a snapshot of a stopped cloud succeeded")
	}
	if snap != nil && snap.Complete {
		t.Error("a failed snapshot says it is complete")
	}
}

// BenchmarkSnapshotCalls counts the API calls of a snapshot of 50, 500 and 2,000 instances across
// two regions and 10 clusters: they follow pages (1,000 instances a page), not machines.
func BenchmarkSnapshotCalls(b *testing.B) {
	for _, n := range []int32{50, 500, 2000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			m := cloud(b)
			var clusters []infra.Cluster
			for c := range 10 {
				region := []string{"eu-west-1", "us-east-1"}[c%2]
				name := fmt.Sprintf("c%02d", c)
				launch(b, m, region, name, "node", n/10)
				clusters = append(clusters, infra.Cluster{Name: name, Region: region})
			}
			p := New(Options{})
			var snap *infra.Snapshot
			b.ResetTimer()
			for range b.N {
				var err error
				if snap, err = p.Snapshot(context.Background(), clusters); err != nil || !snap.Complete {
					b.Fatalf("snapshot: %v %v", err, snap.Errors)
				}
			}
			b.StopTimer()
			if len(snap.Instances) != int(n) {
				b.Fatalf("%d instances found, want %d", len(snap.Instances), n)
			}
			ops := make([]string, 0, len(snap.Calls))
			for op := range snap.Calls {
				ops = append(ops, op)
			}
			sort.Strings(ops)
			for _, op := range ops {
				b.ReportMetric(float64(snap.Calls[op]), op+"-calls/op")
			}
		})
	}
}

// BenchmarkSnapshotFleet is the cloud side of a fleet at scale: BENCH_MACHINES instances (2,000
// unless set; 60,000 is the cloud of 10,000 clusters), six to a cluster as the bench fleet's pools
// make them, one reservation each as CAPA launches them, the clusters split over regions (two, or
// one for every 3,000 instances, up to twenty) and their zones. It reports the snapshot's
// time, its calls by operation (they follow pages of instances, not instances or clusters) and
// what the snapshot holds once collected, per instance.
func BenchmarkSnapshotFleet(b *testing.B) {
	n := 2000
	if v := os.Getenv("BENCH_MACHINES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 6 {
			b.Fatalf("BENCH_MACHINES=%q: want a number of instances, 6 or more", v)
		}
	}
	const perCluster = 6
	m := cloud(b)
	// 3,000 instances a region at most: moto reads an instance's tags by scanning every tag of
	// its region, so its time per page grows with the square of a region's instances.
	regions := []string{
		"eu-west-1", "us-east-1", "us-west-2", "eu-central-1", "ap-southeast-2", "ca-central-1", "us-east-2",
		"us-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "ap-south-1", "ap-southeast-1", "ap-northeast-1",
		"ap-northeast-2", "ap-northeast-3", "sa-east-1", "eu-south-1", "me-south-1", "af-south-1",
	}
	regions = regions[:min(len(regions), max(2, (n+2999)/3000))]
	clusters := make([]infra.Cluster, n/perCluster)
	for i := range clusters {
		clusters[i] = infra.Cluster{Name: fmt.Sprintf("c%05d", i), Region: regions[i%len(regions)]}
	}
	launchFleet(b, m, clusters, perCluster)
	p := New(Options{})
	var snap *infra.Snapshot
	var held uint64
	b.ResetTimer()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var err error
		if snap, err = p.Snapshot(context.Background(), clusters); err != nil || !snap.Complete {
			b.Fatalf("snapshot: %v %v", err, snap.Errors)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
	}
	b.StopTimer()
	if len(snap.Instances) != len(clusters)*perCluster {
		b.Fatalf("%d instances found, want %d", len(snap.Instances), len(clusters)*perCluster)
	}
	b.ReportMetric(float64(len(snap.Instances)), "instances")
	b.ReportMetric(float64(len(regions)), "regions")
	b.ReportMetric(float64(held)/(1<<20), "held-MiB")
	b.ReportMetric(float64(held)/float64(len(snap.Instances)), "held-B/instance")
	for op, calls := range snap.Calls {
		b.ReportMetric(float64(calls), op+"-calls/op")
	}
}

// launchFleet launches perCluster instances of every cluster, a few clusters at a time, the
// instances of a region spread over its zones.
func launchFleet(tb testing.TB, m *testenv.Moto, clusters []infra.Cluster, perCluster int) {
	tb.Helper()
	ctx := context.Background()
	type regionClient struct {
		ec    *ec2.Client
		image *string
		zones []string
	}
	byRegion := map[string]regionClient{}
	for _, c := range clusters {
		if _, ok := byRegion[c.Region]; ok {
			continue
		}
		cfg, err := m.AWSConfig(ctx, c.Region)
		if err != nil {
			tb.Fatal(err)
		}
		ec := ec2.NewFromConfig(cfg)
		images, err := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{})
		if err != nil || len(images.Images) == 0 {
			tb.Fatalf("no image to launch in %s: %v", c.Region, err)
		}
		azs, err := ec.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
		if err != nil || len(azs.AvailabilityZones) == 0 {
			tb.Fatalf("no zone to launch in %s: %v", c.Region, err)
		}
		rc := regionClient{ec: ec, image: images.Images[0].ImageId}
		for _, z := range azs.AvailabilityZones {
			rc.zones = append(rc.zones, aws.ToString(z.ZoneName))
		}
		byRegion[c.Region] = rc
	}
	type job struct {
		c infra.Cluster
		i int
	}
	work := make(chan job)
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for j := range work {
				rc := byRegion[j.c.Region]
				for k := range perCluster {
					zone := rc.zones[(j.i*perCluster+k)%len(rc.zones)]
					if _, err := runInstance(ctx, rc.ec, rc.image, zone, j.c.Name, "node"); err != nil {
						mu.Lock()
						failed = fmt.Errorf("RunInstances for %s: %w", j.c.Name, err)
						mu.Unlock()
						break
					}
				}
			}
		})
	}
	for i, c := range clusters {
		mu.Lock()
		stop := failed != nil
		mu.Unlock()
		if stop {
			break
		}
		work <- job{c, i}
	}
	close(work)
	wg.Wait()
	if failed != nil {
		tb.Fatal(failed)
	}
}

// runInstance launches one instance of cluster in zone in its own reservation, with CAPA's tags
// (and extra), as CAPA launches a machine.
func runInstance(ctx context.Context, c *ec2.Client, image *string, zone, cluster, role string, extra ...ec2types.Tag) (*ec2.RunInstancesOutput, error) {
	tags := append([]ec2types.Tag{
		{Key: aws.String(ClusterTagPrefix + cluster), Value: aws.String("owned")},
		{Key: aws.String(RoleTag), Value: aws.String(role)},
	}, extra...)
	return c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: image, InstanceType: ec2types.InstanceTypeM5Large,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		Placement:         &ec2types.Placement{AvailabilityZone: aws.String(zone)},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: tags}},
	})
}
