package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/driftd/driftd/internal/testenv"
)

func TestRunComparesWithTheCloudOnItsOwnInterval(t *testing.T) {
	ns := "cloud-daemon"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, map[string]string{
		"fleet/kustomization.yaml": kustomization(ns, "aws1.yaml"),
		"fleet/namespace.yaml":     namespaceYAML(ns),
		"fleet/aws1.yaml":          awsCluster,
	})
	id, pid := cloud.launch(t, "aws1", ns+"/aws1-md-0-a")
	metrics := testenv.FreeAddr(t)
	startRun(t, ns, append(commonArgs(t, repo.Dir, "cloud-daemon"), "--provider", "aws", "--interval", "1h",
		"--cloud-interval", "1s", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 30*time.Second, "the first cycle", func() bool { return watching(ns) })
	env.ProvisionMachine(t, ns, "aws1", "md-0", "aws1-md-0-a", pid, gvkAWSMachine, map[string]any{"instanceType": "m5.large"})

	if _, err := cloud.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the Machine of the terminated instance replaced", func() bool {
		s := env.MachineState(t, ns, "aws1-md-0-a")
		return s == "gone" || s == "deleting"
	})
	if v := testenv.MetricValue(metrics, `driftd_cloud_api_calls_total{operation="DescribeInstances",owner="`+ns+`",provider="aws"}`); v <= 0 {
		_, body := httpGet(t, "http://"+metrics+"/metrics")
		t.Errorf("/metrics lacks the cloud calls (%v):\n%s", v, grepLines(body, "driftd_cloud"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
