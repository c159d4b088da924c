package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
	"github.com/driftd/driftd/internal/testenv/image"
)

const (
	system         = "driftd-system"
	serviceAccount = "system:serviceaccount:driftd-system:driftd"
)

// daemon is driftd's binary running as a Deployment's container would.
type daemon struct {
	cmd     *exec.Cmd
	log     *testenv.SyncBuffer
	metrics string
	exited  chan struct{}
}

// run starts the image's binary as the Deployment of objs would start it: its arguments and
// environment, its volumes as folders (the ConfigMap's and the Secret's files in them, their
// mount paths rewritten to those folders in the arguments and the configuration), as its
// ServiceAccount (kubeconfig impersonates it), with the metrics and probes on free loopback ports.
func run(t *testing.T, objs []*unstructured.Unstructured, kubeconfig string, secret map[string][]byte) *daemon {
	t.Helper()
	dep := byKind(objs, "Deployment")[0]
	c := containerOf(t, dep)
	cm := byKind(objs, "ConfigMap")[0]
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	volumes, _, _ := unstructured.NestedSlice(spec, "volumes")
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	paths := map[string]string{} // mount path → folder
	root := t.TempDir()
	for _, raw := range mounts {
		m := raw.(map[string]any)
		dir := filepath.Join(root, m["name"].(string))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		paths[m["mountPath"].(string)] = dir
		for _, rv := range volumes {
			v := rv.(map[string]any)
			if v["name"] != m["name"] {
				continue
			}
			if src, ok := v["configMap"].(map[string]any); ok {
				if src["name"] != cm.GetName() {
					t.Fatalf("volume %s mounts ConfigMap %v, not the configuration %s", v["name"], src["name"], cm.GetName())
				}
				for name, content := range cm.Object["data"].(map[string]any) {
					writeFile(t, filepath.Join(dir, name), content.(string))
				}
			}
			if _, ok := v["secret"]; ok {
				for name, content := range secret {
					writeFile(t, filepath.Join(dir, name), string(content))
				}
			}
		}
	}
	// One pass over each string, the longest mount path first (/etc/driftd/git before /etc/driftd),
	// so a folder's own path is never rewritten again.
	var keys []string
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, k, paths[k])
	}
	rewrite := strings.NewReplacer(pairs...).Replace
	for _, raw := range mounts { // the configuration names files of the other mounts
		m := raw.(map[string]any)
		if entries, err := os.ReadDir(paths[m["mountPath"].(string)]); err == nil {
			for _, e := range entries {
				p := filepath.Join(paths[m["mountPath"].(string)], e.Name())
				if data, err := os.ReadFile(p); err == nil && strings.HasSuffix(p, ".yaml") {
					writeFile(t, p, rewrite(string(data)))
				}
			}
		}
	}
	var args []string
	for _, a := range argsOf(t, dep) {
		args = append(args, rewrite(a))
	}
	metrics, probes := testenv.FreeAddr(t), testenv.FreeAddr(t)
	args = append(args, "--kubeconfig="+kubeconfig, "--metrics-bind-address="+metrics, "--health-probe-bind-address="+probes)

	env := append(os.Environ(), "TMPDIR="+paths["/tmp"])
	vars, _, _ := unstructured.NestedSlice(c, "env")
	for _, raw := range vars {
		v := raw.(map[string]any)
		switch {
		case v["value"] != nil:
			env = append(env, fmt.Sprintf("%s=%v", v["name"], v["value"]))
		case fmt.Sprint(v["valueFrom"]) == "map[fieldRef:map[fieldPath:metadata.namespace]]":
			env = append(env, fmt.Sprintf("%s=%s", v["name"], dep.GetNamespace()))
		case strings.Contains(fmt.Sprint(v["valueFrom"]), "limits.memory"):
			limit, _, _ := unstructured.NestedString(c, "resources", "limits", "memory")
			q := resource.MustParse(limit)
			env = append(env, fmt.Sprintf("%s=%d", v["name"], q.Value()))
		default:
			t.Fatalf("the Deployment sets %v in a way this test does not know", v)
		}
	}
	d := &daemon{log: &testenv.SyncBuffer{}, metrics: metrics, exited: make(chan struct{})}
	d.cmd = exec.Command(image.Binary(t), args...)
	d.cmd.Env = env
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("driftd %s\n%s", strings.Join(args, " "), d.log.String())
		}
	})
	return d
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(45 * time.Second):
		t.Error("driftd did not stop within 45 s of SIGTERM")
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// exampleFleet is examples/fleet-repo as files, to commit as a user would.
func exampleFleet(t *testing.T) map[string]string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := fleet.ReadDir(filepath.Join(root, "examples", "fleet-repo"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var (
	gvkAMT        = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachineTemplate"}
	gvkAWSMachine = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Kind: "AWSMachine"}
)

// TestDriftdAsDeployed runs driftd as a platform team deploys it, into an empty management
// cluster: config/default with the prune, aws and replace components and the team's configuration
// (its repository, the example fleet, over HTTPS-style basic auth with the token in the Secret
// driftd-git as docs/deploying.md creates it), the RBAC applied and aggregated, the binary out of the
// image run with the Deployment's own arguments and environment as the ServiceAccount. The example
// fleet converges, a kubectl scale is undone, a template renamed the Cluster API way is created and
// the old one pruned, a Machine whose instance is terminated (moto) is replaced; not one request
// is forbidden, and every permission the role grants is one driftd used. Then the same with the
// detect component: drift reported, nothing of the fleet written.
func TestDriftdAsDeployed(t *testing.T) {
	ctx := context.Background()
	const token = "glpat-deployed-token"
	moto := testenv.RequireMoto(t)
	moto.UseFromEnvironment(t) // what IRSA or Pod Identity gives the pod
	files := exampleFleet(t)
	repo := testenv.NewGitRepo(t, files)
	url := repo.ServeHTTP(t, "driftd", token)
	config := fmt.Sprintf(`repo: %s
ref: main
path: clusters
interval: 2s
cloud-interval: 2s
git-username: driftd
git-token-file: /etc/driftd/git/token
render-max-memory: 384Mi
`, url)
	objs := testenv.Kustomize(t, overlay(t, []string{"prune", "aws", "replace"}, `configMapGenerator:
- name: driftd-config
  namespace: driftd-system
  behavior: replace
  files: [config.yaml]
`, map[string]string{"config.yaml": config}))

	// Installed as kubectl apply would (the Deployment only as a dry run: no kubelet runs here),
	// after CAPA's installation made its namespace.
	env.Apply(t, "kubectl", []*unstructured.Unstructured{{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "capa-system"}}}})
	env.Apply(t, "kubectl", byKind(objs, "Namespace"))
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		opts := []client.PatchOption{client.FieldOwner("kubectl"), client.ForceOwnership}
		if o.GetKind() == "Deployment" {
			opts = append(opts, client.DryRunAll)
		}
		if err := env.Client.Patch(ctx, o.DeepCopy(), client.Apply, opts...); err != nil {
			t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	env.WaitForAggregatedRole(t, "driftd")
	secret := map[string][]byte{"token": []byte(token)} // kubectl create secret generic driftd-git --from-literal=token=...
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: system, Name: "driftd-git"}, Data: secret}); err != nil {
		t.Fatal(err)
	}

	proxy := env.NewAPIProxy(t)
	kubeconfig := env.ImpersonatingKubeconfig(t, serviceAccount, proxy.URL)
	d := run(t, objs, kubeconfig, secret)

	want, err := render.Render(repo.Dir, "clusters", render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, "the example fleet created", func() bool {
		for _, o := range want.Objects {
			if !drv.Exists(o.GroupVersionKind(), o.GetNamespace(), o.GetName()) {
				return false
			}
		}
		return true
	})
	ns := "fleet-production"

	drv.Scale(t, "kubectl-scale", ns, "prod-eu-md-0", 9)
	testenv.Eventually(t, 30*time.Second, "kubectl scale undone", func() bool { return drv.Replicas(ns, "prod-eu-md-0") == 6 })

	// The Cluster API way to change a template: a new name, the reference moved to it.
	workers := files["clusters/production/eu-aws/workers.yaml"]
	renamed := strings.Replace(workers, "kind: AWSMachineTemplate\nmetadata:\n  name: prod-eu-md-0\n", "kind: AWSMachineTemplate\nmetadata:\n  name: prod-eu-md-0-v2\n", 1)
	renamed = strings.Replace(renamed, "        kind: AWSMachineTemplate\n        name: prod-eu-md-0\n", "        kind: AWSMachineTemplate\n        name: prod-eu-md-0-v2\n", 1)
	if renamed == workers || strings.Count(renamed, "prod-eu-md-0-v2") != 2 {
		t.Fatalf("the example's worker template is not where this test expects it")
	}
	repo.Commit(t, "workers: a new template", map[string]string{"clusters/production/eu-aws/workers.yaml": renamed})
	testenv.Eventually(t, time.Minute, "the new template created and the old one pruned", func() bool {
		return drv.Exists(gvkAMT, ns, "prod-eu-md-0-v2") && !drv.Exists(gvkAMT, ns, "prod-eu-md-0")
	})

	// A Machine of prod-eu-md-0 whose instance is terminated: remediated through the example's
	// MachineHealthCheck.
	ec2c := ec2.NewFromConfig(must(moto.AWSConfig(ctx, "eu-west-1")))
	images, err := ec2c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("no image in moto: %v", err)
	}
	out, err := ec2c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: images.Images[0].ImageId, InstanceType: ec2types.InstanceTypeM6iLarge,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), Placement: &ec2types.Placement{AvailabilityZone: aws.String("eu-west-1a")},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
			{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/cluster/prod-eu"), Value: aws.String("owned")},
			{Key: aws.String("sigs.k8s.io/cluster-api-provider-aws/role"), Value: aws.String("node")},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	env.ProvisionMachine(t, ns, "prod-eu", "prod-eu-md-0", "prod-eu-md-0-m1", "aws:///eu-west-1a/"+id, gvkAWSMachine, map[string]any{"instanceType": "m6i.large"})
	if _, err := ec2c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the Machine of the terminated instance marked for its MachineHealthCheck", func() bool {
		return env.MachineState(t, ns, "prod-eu-md-0-m1") == "remediate"
	})
	testenv.WaitForCycles(t, d.metrics, 2, time.Minute)

	// With what is open now: a metadata informer lists as a watch (client-go's watch-list), and a
	// watch is recorded only once it ends.
	requests := append(proxy.Requests(func(testenv.Request) bool { return true }), proxy.Open()...)
	for _, r := range requests {
		if r.Status == 403 {
			t.Errorf("forbidden: %s %s", r.Method, r.Path)
		}
	}
	checkLeastPrivilege(t, requests)
	d.stop(t)

	// The detect configuration: the same, reporting only.
	detect := testenv.Kustomize(t, overlay(t, []string{"prune", "aws", "replace", "detect"}, `configMapGenerator:
- name: driftd-config
  namespace: driftd-system
  behavior: replace
  files: [config.yaml]
`, map[string]string{"config.yaml": config}))
	env.Apply(t, "kubectl", byKind(detect, "ConfigMap"))
	proxy.Reset()
	dd := run(t, detect, kubeconfig, secret)
	drv.Scale(t, "kubectl-scale", ns, "prod-eu-md-0", 8)
	testenv.WaitForCycles(t, dd.metrics, 3, time.Minute)
	if r := drv.Replicas(ns, "prod-eu-md-0"); r != 8 {
		t.Errorf("detect mode set the replicas to %d", r)
	}
	if !driver.HasEvent(drv.Events(t, ns, "MachineDeployment", "prod-eu-md-0"), "DriftDetected") {
		t.Error("detect mode did not report the scale")
	}
	for _, r := range proxy.Requests(testenv.Writes) {
		if r.DryRun || strings.Contains(r.Path, "/namespaces/"+system+"/") || strings.Contains(r.Path, "/events") {
			continue // dry runs, driftd's own namespace (status, lease), Events
		}
		t.Errorf("detect mode wrote %s %s", r.Method, r.Path)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// permission is one verb on one resource of one API group, in a namespace or cluster-wide ("").
type permission struct{ group, resource, verb, namespace string }

// used turns the requests driftd made into the permissions they needed.
func used(requests []testenv.Request) map[permission]bool {
	out := map[permission]bool{}
	for _, r := range requests {
		parts := strings.Split(strings.Trim(r.Path, "/"), "/")
		var group string
		switch {
		case len(parts) >= 3 && parts[0] == "api":
			parts = parts[2:] // api/v1
		case len(parts) >= 4 && parts[0] == "apis":
			group, parts = parts[1], parts[3:]
		default:
			continue // discovery
		}
		ns := ""
		if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
			ns, parts = parts[1], parts[2:]
		}
		resource := parts[0]
		named := len(parts) >= 2
		verb := map[string]string{"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[r.Method]
		if r.Method == "GET" {
			switch {
			case r.Watch:
				verb = "watch"
			case named:
				verb = "get"
			default:
				verb = "list"
			}
		}
		out[permission{group, resource, verb, ns}] = true
		if verb == "patch" {
			// A server-side apply creates what does not exist, and the API server authorizes it
			// as a create then (the fleet is created from an empty cluster: every kind was).
			out[permission{group, resource, "create", ns}] = true
		}
	}
	return out
}

// notExercised says why a granted permission the scenario does not use is still needed, or "".
func notExercised(p permission, have map[permission]bool) string {
	read := map[string]bool{"get": true, "list": true, "watch": true}
	if read[p.verb] {
		for q := range have {
			if q.group == p.group && (p.resource == "*" || q.resource == p.resource) && read[q.verb] {
				return "reading a kind is one capability: the cache lists and watches it, a drifted object is read with a get"
			}
		}
	}
	switch {
	case p.verb == "delete" && p.group != "" && p.group != "coordination.k8s.io":
		return "pruning an object of that kind once it leaves Git (the scenario prunes an AWSMachineTemplate)"
	case p.group == "cluster.x-k8s.io" && p.resource == "machinepools":
		return "applying a MachinePool Git renders (the example fleet has none)"
	case p.group == "apiextensions.k8s.io" && p.resource == "customresourcedefinitions" && p.verb == "get":
		return "the contract labels Cluster API's own KubeadmControlPlane rule reads to judge a control plane's Machines (the scenario runs no Cluster API controllers: no Machines; test/capi judges them)"
	}
	return ""
}

// checkLeastPrivilege: every permission the ServiceAccount holds (the aggregated ClusterRole and
// the Roles bound to it) is one driftd used in the scenario, or one notExercised explains.
func checkLeastPrivilege(t *testing.T, requests []testenv.Request) {
	t.Helper()
	ctx := context.Background()
	have := used(requests)
	usedIn := func(group, resource, verb, ns string) bool {
		for p := range have {
			if p.group == group && (resource == "*" || p.resource == resource) && p.verb == verb && (ns == "" || p.namespace == ns) {
				return true
			}
		}
		return false
	}
	check := func(where, ns string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if usedIn(g, res, v, ns) {
							continue
						}
						if notExercised(permission{g, res, v, ns}, have) != "" {
							continue
						}
						t.Errorf("%s grants %s %s, which driftd did not use", where, strings.TrimPrefix(g+"/"+res, "/"), v)
					}
				}
			}
		}
	}
	role := &rbacv1.ClusterRole{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "driftd"}, role); err != nil {
		t.Fatal(err)
	}
	check("ClusterRole driftd", "", role.Rules)
	bindings := &rbacv1.RoleBindingList{}
	if err := env.Client.List(ctx, bindings); err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings.Items {
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Namespace == system && s.Name == "driftd" || s.Kind == "ServiceAccount" && s.Name == "driftd" && b.Namespace == system {
				r := &rbacv1.Role{}
				if err := env.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: b.RoleRef.Name}, r); err != nil {
					t.Fatal(err)
				}
				if b.Namespace == "capa-system" {
					continue // AWSClusterStaticIdentity Secrets: the example fleet uses the pod's own identity
				}
				check("Role "+b.Namespace+"/"+r.Name, b.Namespace, r.Rules)
			}
		}
	}
	var names []string
	for p := range have {
		names = append(names, fmt.Sprintf("%s/%s %s %s", p.group, p.resource, p.verb, p.namespace))
	}
	sort.Strings(names)
	t.Logf("driftd used: %s", strings.Join(names, "; "))
}
