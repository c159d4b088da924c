package aws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"

	"github.com/driftd/driftd/internal/infra"
)

// CAPA's tags.
const (
	// ClusterTagPrefix + cluster name = "owned" marks what CAPA created for a cluster.
	ClusterTagPrefix = "sigs.k8s.io/cluster-api-provider-aws/cluster/"
	// RoleTag is control-plane, node, bastion...
	RoleTag = "sigs.k8s.io/cluster-api-provider-aws/role"
	// MachineNameTag is "<namespace>/<machine>".
	MachineNameTag = "MachineName"
)

// maxFilterValues is how many values one EC2 or Auto Scaling filter takes.
const maxFilterValues = 200

// Options configure a Provider; every field is optional.
type Options struct {
	// OnCall is called once per API call with its operation name (for metrics).
	OnCall func(operation string)
	// PageSize is DescribeInstances' MaxResults (5 to 1000); 1000 when zero.
	PageSize int32
	// MaxAttempts bounds the tries of a throttled or failing call; 5 when zero.
	MaxAttempts int
	// LoadConfig loads the SDK configuration of a region; config.LoadDefaultConfig when nil.
	LoadConfig func(ctx context.Context, region string) (aws.Config, error)
}

// Provider is the AWS inventory.
type Provider struct {
	opts Options
}

type regionClients struct {
	ec2 *ec2.Client
	asg *autoscaling.Client
}

// New returns a Provider.
func New(opts Options) *Provider {
	if opts.PageSize == 0 {
		opts.PageSize = 1000
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 5
	}
	if opts.LoadConfig == nil {
		attempts := opts.MaxAttempts
		opts.LoadConfig = func(ctx context.Context, region string) (aws.Config, error) {
			return config.LoadDefaultConfig(ctx, config.WithRegion(region), config.WithRetryer(func() aws.Retryer {
				// The standard retryer retries RequestLimitExceeded and the other throttling codes
				// with jittered exponential backoff.
				return retry.NewStandard(func(o *retry.StandardOptions) {
					o.MaxAttempts = attempts
					o.MaxBackoff = 5 * time.Second
				})
			}))
		}
	}
	return &Provider{opts: opts}
}

// Provider is infra.ProviderAWS.
func (p *Provider) Provider() string { return infra.ProviderAWS }

// Snapshot reads the instances and Auto Scaling groups of clusters, one account (identity) and
// region at a time, each with the cluster's own identity. A group that cannot be read makes its
// clusters unavailable; the others stand.
func (p *Provider) Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error) {
	snap := infra.NewSnapshot(infra.ProviderAWS)
	type scope struct{ identity, region string }
	groups := map[scope][]infra.Cluster{}
	identities := map[string]*infra.AWSIdentity{}
	for _, c := range clusters {
		if c.Region == "" {
			snap.FailClusters(fmt.Errorf("AWSCluster %s has no region", c.Key()), c)
			continue
		}
		key := ""
		if c.AWS != nil {
			key = c.AWS.Key
			identities[key] = c.AWS
		}
		groups[scope{key, c.Region}] = append(groups[scope{key, c.Region}], c)
	}
	scopes := slices.SortedFunc(maps.Keys(groups), func(a, b scope) int {
		return strings.Compare(a.identity+"\x00"+a.region, b.identity+"\x00"+b.region)
	})
	count := snap.CallCounter(p.opts.OnCall)
	for _, sc := range scopes {
		members := groups[sc]
		where := "region " + sc.region
		if sc.identity != "" {
			where = sc.identity + " in " + where
		}
		byName := map[string]string{}
		var names []string
		for _, c := range members {
			if other, dup := byName[c.Name]; dup {
				// CAPA's tags carry the cluster's name only: the two cannot be told apart.
				err := fmt.Errorf("%s: clusters %s and %s share a name, and CAPA's tags cannot tell their instances apart", where, other, c.Key())
				snap.FailClusters(err, members...)
				names = nil
				break
			}
			byName[c.Name] = c.Key()
			names = append(names, c.Name)
		}
		if names == nil {
			continue
		}
		rc, err := p.clients(ctx, sc.region, identities[sc.identity], count)
		if err != nil {
			snap.FailClusters(fmt.Errorf("%s: %w", where, err), members...)
			continue
		}
		sort.Strings(names)
		// The instances in one listing of pages: by the clusters' tags while one filter holds
		// them, past that every CAPA instance of the location, those of clusters outside the
		// fleet dropped page by page (a listing per batch of names would ask more and read the
		// same pages).
		filter := tagKeys(names)
		if len(names) > maxFilterValues {
			filter = []string{ClusterTagPrefix + "*"}
		}
		if err := p.instances(ctx, rc, sc.region, filter, byName, snap); err != nil {
			snap.FailClusters(fmt.Errorf("%s: DescribeInstances: %w", where, err), members...)
			continue // the account or region does not answer: asking it more only delays the cycle
		}
		for start := 0; start < len(names); start += maxFilterValues {
			batch := names[start:min(start+maxFilterValues, len(names))]
			if err := p.groups(ctx, rc, sc.region, batch, byName, snap); err != nil {
				snap.FailClusters(fmt.Errorf("%s: DescribeAutoScalingGroups: %w", where, err), members...)
				break
			}
		}
	}
	if len(snap.Unavailable) > 0 && len(snap.Unavailable) == len(clusters) {
		snap.Complete = false
		return snap, errors.Join(snap.Errors...)
	}
	return snap, nil
}

func (p *Provider) clients(ctx context.Context, region string, id *infra.AWSIdentity, count func(string)) (*regionClients, error) {
	cfg, err := p.opts.LoadConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	counter := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("driftdCallCounter",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				count(middleware.GetOperationName(ctx))
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	}
	if id != nil {
		// The cluster's own identity, as CAPA would use it: its static keys, or the default chain,
		// then each role assumed in turn with its external ID.
		if id.Static != nil {
			cfg.Credentials = aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
				id.Static.AccessKeyID, id.Static.SecretAccessKey, id.Static.SessionToken))
		}
		for _, role := range id.Roles {
			stsClient := sts.NewFromConfig(cfg, func(o *sts.Options) { o.APIOptions = append(o.APIOptions, counter) })
			cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, role.ARN, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = role.SessionName
				if o.RoleSessionName == "" {
					o.RoleSessionName = "driftd"
				}
				if role.ExternalID != "" {
					o.ExternalID = aws.String(role.ExternalID)
				}
			}))
		}
	}
	// Clients are made anew per snapshot so that credentials and endpoints set in the environment
	// since the last cycle apply; the SDK caches credentials itself.
	return &regionClients{
		ec2: ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, counter) }),
		asg: autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.APIOptions = append(o.APIOptions, counter) }),
	}, nil
}

func tagKeys(names []string) []string {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = ClusterTagPrefix + n
	}
	return keys
}

// instances lists, in every state, the instances whose tag keys match one of tagKeys (EC2 filter
// values: exact, or with a * wildcard) and that carry the tag of a cluster in keys (name → the
// cluster's key); the others are dropped.
func (p *Provider) instances(ctx context.Context, rc *regionClients, region string, tagKeys []string, keys map[string]string, snap *infra.Snapshot) error {
	pages := ec2.NewDescribeInstancesPaginator(rc.ec2, &ec2.DescribeInstancesInput{
		Filters:    []ec2types.Filter{{Name: aws.String("tag-key"), Values: tagKeys}},
		MaxResults: aws.Int32(p.opts.PageSize),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				if inst, ok := instance(region, i, keys); ok {
					snap.Instances = append(snap.Instances, inst)
				}
			}
		}
	}
	return nil
}

// instance is i as the inventory holds it, of the cluster in keys whose tag it carries; false when
// it carries none of theirs.
func instance(region string, i ec2types.Instance, keys map[string]string) (infra.Instance, bool) {
	tags := map[string]string{}
	for _, t := range i.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	zone := ""
	if i.Placement != nil {
		zone = aws.ToString(i.Placement.AvailabilityZone)
	}
	inst := infra.Instance{
		Provider: infra.ProviderAWS, ID: aws.ToString(i.InstanceId), Region: region, Zone: zone,
		Type: string(i.InstanceType), Image: aws.ToString(i.ImageId), State: state(i.State),
		Role: tags[RoleTag], MachineName: tags[MachineNameTag], Name: tags["Name"], Tags: tags,
		Pool: tags["aws:autoscaling:groupName"],
	}
	inst.ProviderID = infra.AWSProviderID(zone, inst.ID)
	if i.LaunchTime != nil {
		inst.LaunchTime = *i.LaunchTime
	}
	for k := range tags {
		if name, ok := strings.CutPrefix(k, ClusterTagPrefix); ok && keys[name] != "" {
			inst.Cluster = keys[name]
			return inst, true
		}
	}
	return inst, false
}

func state(s *ec2types.InstanceState) string {
	if s == nil {
		return ""
	}
	switch s.Name {
	case ec2types.InstanceStateNameRunning:
		return infra.StateRunning
	case ec2types.InstanceStateNamePending:
		return infra.StatePending
	case ec2types.InstanceStateNameStopped:
		return infra.StateStopped
	case ec2types.InstanceStateNameStopping:
		return infra.StateStopping
	case ec2types.InstanceStateNameTerminated, ec2types.InstanceStateNameShuttingDown:
		return infra.StateTerminated
	}
	return string(s.Name)
}

// groups lists the Auto Scaling groups carrying one of the clusters' tags.
func (p *Provider) groups(ctx context.Context, rc *regionClients, region string, names []string, keys map[string]string, snap *infra.Snapshot) error {
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(rc.asg, &autoscaling.DescribeAutoScalingGroupsInput{
		Filters:    []asgtypes.Filter{{Name: aws.String("tag-key"), Values: tagKeys(names)}},
		MaxRecords: aws.Int32(100),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, g := range page.AutoScalingGroups {
			pool := infra.NodePool{
				Provider: infra.ProviderAWS, Name: aws.ToString(g.AutoScalingGroupName), Region: region,
				Desired: aws.ToInt32(g.DesiredCapacity), Min: aws.ToInt32(g.MinSize), Max: aws.ToInt32(g.MaxSize),
			}
			for _, t := range g.Tags {
				if name, ok := strings.CutPrefix(aws.ToString(t.Key), ClusterTagPrefix); ok {
					pool.Cluster = keys[name]
				}
			}
			for _, i := range g.Instances {
				pool.Members = append(pool.Members, aws.ToString(i.InstanceId))
			}
			snap.Pools = append(snap.Pools, pool)
		}
	}
	return nil
}

// RestorePool sets an Auto Scaling group's desired, min and max sizes (UpdateAutoScalingGroup).
// desired nil leaves the desired capacity to whoever manages it.
func (p *Provider) RestorePool(ctx context.Context, cluster infra.Cluster, name string, desired *int32, minSize, maxSize int32) error {
	region := cluster.Region
	rc, err := p.clients(ctx, region, cluster.AWS, func(op string) {
		if p.opts.OnCall != nil {
			p.opts.OnCall(op)
		}
	})
	if err != nil {
		return err
	}
	_, err = rc.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name), DesiredCapacity: desired,
		MinSize: aws.Int32(minSize), MaxSize: aws.Int32(maxSize),
	})
	if err != nil {
		return fmt.Errorf("UpdateAutoScalingGroup %s in %s: %w", name, region, err)
	}
	return nil
}

func unique(ss []string) []string {
	sort.Strings(ss)
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}
