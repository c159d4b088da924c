// Package aws reads the EC2 instances and Auto Scaling groups of Cluster API clusters on AWS (CAPA)
// with aws-sdk-go-v2, and restores an Auto Scaling group's sizes when asked.
//
// Instances are found by CAPA's tags (sigs.k8s.io/cluster-api-provider-aws/cluster/<name> and
// .../role, MachineName, Name) in one paginated DescribeInstances listing per account and region:
// up to 200 clusters (the values one filter takes) by their tag keys, more by the key's wildcard,
// the instances of clusters outside the fleet dropped page by page. Auto Scaling groups are read
// 200 clusters a call; throttling is retried with backoff by the SDK's standard retryer. The calls
// per cycle grow with regions and pages, never with the number of machines.
//
// Credentials, region and endpoints follow the SDK's own conventions (environment, shared config,
// web identity; AWS_ENDPOINT_URL and the per-service variables), with each cluster's region taken
// from its AWSCluster, so nothing driftd-specific is configured.
package aws
