package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// clusterFiles is one cluster of the generated fleet: 8 objects, as a real AWS cluster has.
func clusterFiles(i int) string {
	n := fmt.Sprintf("c%04d", i)
	return strings.ReplaceAll(`apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: NAME
spec:
  clusterNetwork:
    pods:
      cidrBlocks: ["192.168.0.0/16"]
  controlPlaneRef: {apiGroup: controlplane.cluster.x-k8s.io, kind: KubeadmControlPlane, name: NAME-cp}
  infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSCluster, name: NAME}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSCluster
metadata:
  name: NAME
spec:
  region: eu-west-1
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata:
  name: NAME-cp
spec:
  replicas: 3
  version: v1.34.1
  machineTemplate:
    spec:
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: NAME-cp}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachineTemplate
metadata:
  name: NAME-cp
spec:
  template:
    spec:
      instanceType: m6i.xlarge
      iamInstanceProfile: control-plane.cluster-api-provider-aws.sigs.k8s.io
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: NAME-md-0
spec:
  clusterName: NAME
  replicas: 3
  selector:
    matchLabels: {pool: NAME-md-0}
  template:
    metadata:
      labels: {pool: NAME-md-0}
    spec:
      clusterName: NAME
      version: v1.34.1
      bootstrap:
        configRef: {apiGroup: bootstrap.cluster.x-k8s.io, kind: KubeadmConfigTemplate, name: NAME-md-0}
      infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: AWSMachineTemplate, name: NAME-md-0}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSMachineTemplate
metadata:
  name: NAME-md-0
spec:
  template:
    spec:
      instanceType: m6i.large
      iamInstanceProfile: nodes.cluster-api-provider-aws.sigs.k8s.io
---
apiVersion: bootstrap.cluster.x-k8s.io/v1beta2
kind: KubeadmConfigTemplate
metadata:
  name: NAME-md-0
spec:
  template:
    spec:
      joinConfiguration:
        nodeRegistration:
          kubeletExtraArgs:
          - {name: cloud-provider, value: external}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineHealthCheck
metadata:
  name: NAME-md-0
spec:
  clusterName: NAME
  selector:
    matchLabels: {pool: NAME-md-0}
`, "NAME", n)
}

// fleet is a generated fleet in a git repository, applied to the test bed as driftd would have.
type fleet struct {
	ns      string
	owner   string
	repo    *testenv.GitRepo
	objects []*unstructured.Unstructured
}

// newFleet writes a fleet of n clusters into namespace ns, one folder per cluster, and applies it
// (tracked as driftd tracks what it applies) so the test starts from a fleet in sync with Git.
func newFleet(tb testing.TB, ns string, n int) *fleet {
	tb.Helper()
	files := map[string]string{"fleet/kustomization.yaml": "namespace: " + ns + "\nresources:\n"}
	var all strings.Builder
	for i := range n {
		dir := fmt.Sprintf("fleet/c%04d", i)
		files[dir+"/cluster.yaml"] = clusterFiles(i)
		files["fleet/kustomization.yaml"] += fmt.Sprintf("- c%04d/cluster.yaml\n", i)
		all.WriteString(clusterFiles(i) + "---\n")
	}
	objs, err := testenv.DecodeObjects([]byte(all.String()))
	if err != nil {
		tb.Fatal(err)
	}
	f := &fleet{ns: ns, owner: ns, repo: testenv.NewGitRepo(tb, files), objects: objs}
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	f.apply(tb)
	return f
}

// apply server-side applies every object as driftd does, from a few workers.
func (f *fleet) apply(tb testing.TB) {
	tb.Helper()
	work := make(chan *unstructured.Unstructured)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for obj := range work {
				o := obj.DeepCopy()
				o.SetNamespace(f.ns)
				diff.Track(o, f.owner)
				if err := env.Client.Patch(context.Background(), o, client.Apply, client.FieldOwner("driftd"), client.ForceOwnership); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, o := range f.objects {
		work <- o
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		tb.Fatalf("applying the fleet: %v", err)
	}
}

// fleetSize is BENCH_CLUSTERS, or def.
func fleetSize(def int) int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_CLUSTERS")); err == nil && n > 0 {
		return n
	}
	return def
}

// requestCounter counts the HTTP requests a rest.Config sends, and among them the dry runs.
type requestCounter struct{ n, dryRuns atomic.Int64 }

func (c *requestCounter) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			c.n.Add(1)
			if req.URL.Query().Get("dryRun") == "All" {
				c.dryRuns.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var gvkMD = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineDeployment"}
