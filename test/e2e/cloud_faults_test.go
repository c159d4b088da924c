package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// throttle puts a proxy in front of moto, as AWS's API endpoint, and points the SDK's standard
// variable at it: the requests of action (EC2's Query API names it in the body) are answered with
// EC2's throttling error — HTTP 503, RequestLimitExceeded — while *left is above 0 (each answer
// counts one down; a negative value throttles for ever). It returns how many it throttled.
func throttle(t *testing.T, cloud *awsCloud, action string, left *int) func() int {
	t.Helper()
	moto, _ := url.Parse(cloud.moto.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(moto)
	rp.Transport = testenv.HTTP.Transport
	var mu sync.Mutex
	throttled := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		hit := bytes.Contains(body, []byte("Action="+action+"&")) && *left != 0
		if hit {
			*left--
			throttled++
		}
		mu.Unlock()
		if hit {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled</RequestID></Response>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return throttled
	}
}

// TestEC2ThrottlingJudgesNothingFalsely: EC2 throttles DescribeInstances (RequestLimitExceeded)
// while one instance of four is really gone. Throttled for good, the inventory is unavailable:
// no InstanceMissing, no Machine touched. Throttled twice, the SDK's retries get through and
// exactly the instance that is gone is missing — no other.
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

	t.Run("throttled for good: unavailable, nothing judged, nothing written", func(t *testing.T) {
		forever := -1
		throttled := throttle(t, cloud, "DescribeInstances", &forever)
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

	t.Run("throttled twice: retried, and only what is gone is missing", func(t *testing.T) {
		twice := 2
		throttled := throttle(t, cloud, "DescribeInstances", &twice)
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
