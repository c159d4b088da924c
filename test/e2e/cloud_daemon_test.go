package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestRunComparesWithTheCloudOnItsOwnInterval(t *testing.T) {
	ns := "cloud-daemon"
	cloud := newAWSCloud(t)
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("aws1.yaml", awsCluster).Files())
	id, pid := cloud.launch(t, "aws1", ns+"/aws1-md-0-a")
	metrics := testenv.FreeAddr(t)
	drv.Start(t, ns, append(drv.Args(t, repo.Dir, "cloud-daemon"), "--provider", "aws", "--interval", "1h",
		"--cloud-interval", "1s", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 30*time.Second, "the first cycle", func() bool { return drv.Watching(ns) })
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
