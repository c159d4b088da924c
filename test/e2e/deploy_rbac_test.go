package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv"
)

const serviceAccount = "system:serviceaccount:driftd-system:driftd"

// TestDeployManifestsGrantEnoughAndNoMore renders config/default, applies it (a server-side dry
// run for the workload, for real for the namespace and RBAC), then runs driftd as its
// ServiceAccount: a correcting run, a plan, and the daemon with leader election all work, and the
// ServiceAccount can do nothing driftd does not need.
func TestDeployManifestsGrantEnoughAndNoMore(t *testing.T) {
	ctx := context.Background()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(root, "config/default", render.Options{})
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("rendering config/default: %v %v", err, res.Errors)
	}
	kinds := map[string]bool{}
	for _, o := range res.Objects {
		kinds[o.GetKind()] = true
		real := o.GetKind() == "Namespace" || o.GetObjectKind().GroupVersionKind().Group == "rbac.authorization.k8s.io" || o.GetKind() == "ServiceAccount"
		opts := []client.PatchOption{client.FieldOwner("kubectl"), client.ForceOwnership}
		if !real {
			opts = append(opts, client.DryRunAll)
		}
		if err := env.Client.Patch(ctx, o.DeepCopy(), client.Apply, opts...); err != nil {
			t.Errorf("%s: %s %s: %v", o.File, o.GetKind(), o.GetName(), err)
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "ConfigMap", "Secret"} {
		if !kinds[k] {
			t.Errorf("config/default has no %s", k)
		}
	}

	// driftd as its ServiceAccount.
	ns := "rbac-fleet"
	repo := testenv.NewGitRepo(t, fleetFiles(ns))
	as := func(user string) []string {
		return []string{"--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", impersonating(t, user),
			"--owner", "rbac", "--git-cache-dir", t.TempDir()}
	}
	args := as(serviceAccount)
	runOnce(t, "driftd-system", args...)
	scaleAs(t, "kubectl-edit", ns, "prod-md-0", 5)
	if code, doc, stderr := plan(t, args...); code != 2 || len(doc.Findings) != 1 {
		t.Errorf("plan as the ServiceAccount: exit %d, findings %+v\n%s", code, doc.Findings, stderr)
	}
	startRun(t, "driftd-system", append(args, "--leader-elect", "--interval", "1h", "--prune")...)
	testenv.Eventually(t, 30*time.Second, "the daemon, as the ServiceAccount, to restore the replicas", func() bool {
		return replicas(t, ns, "prod-md-0") == 3
	})

	// The same run as a ServiceAccount without the role fails: the impersonation is in effect.
	if code, _, stderr := driftd(ctx, append([]string{"plan"}, as("system:serviceaccount:driftd-system:nobody")...)...); code != 1 {
		t.Errorf("plan as a ServiceAccount without any role: exit %d, want 1\n%s", code, stderr)
	}

	// ... and nothing more.
	for _, attr := range []authorizationv1.ResourceAttributes{
		{Verb: "list", Resource: "pods"},
		{Verb: "create", Group: "apps", Resource: "deployments", Namespace: "default"},
		{Verb: "update", Group: "cluster.x-k8s.io", Resource: "clusters", Namespace: ns},
		{Verb: "create", Group: "cluster.x-k8s.io", Resource: "machines", Namespace: ns},
		{Verb: "delete", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"},
		{Verb: "patch", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"},
	} {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: serviceAccount, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:driftd-system", "system:authenticated"},
			ResourceAttributes: &attr,
		}}
		if err := env.Client.Create(ctx, review); err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Errorf("the ServiceAccount may %s %s.%s in %q; driftd never does", attr.Verb, attr.Resource, attr.Group, attr.Namespace)
		}
	}
}

// installRBAC applies config/default's Namespace, ServiceAccount and RBAC, as deploying driftd
// does, so that a test can run driftd as its ServiceAccount.
func installRBAC(tb testing.TB) {
	tb.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	res, err := render.Render(root, "config/default", render.Options{})
	if err != nil || len(res.Errors) > 0 {
		tb.Fatalf("rendering config/default: %v %v", err, res.Errors)
	}
	for _, o := range res.Objects {
		if o.GetKind() == "Namespace" || o.GetKind() == "ServiceAccount" || o.GroupVersionKind().Group == "rbac.authorization.k8s.io" {
			if err := env.Client.Patch(context.Background(), o.DeepCopy(), client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
				tb.Fatalf("%s: %s %s: %v", o.File, o.GetKind(), o.GetName(), err)
			}
		}
	}
}

// impersonating writes a kubeconfig of the test bed that acts as user.
func impersonating(tb testing.TB, user string) string {
	tb.Helper()
	path := env.KubeconfigFile(tb)
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	out := filepath.Join(tb.TempDir(), "kubeconfig-impersonating")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestShardOverlayRendersASecondDriftd(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(root, "config/samples/shard-a", render.Options{})
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("rendering config/samples/shard-a: %v %v", err, res.Errors)
	}
	var args []any
	for _, o := range res.Objects {
		if o.GetKind() == "Namespace" {
			t.Errorf("the shard overlay renders a Namespace %s; it runs beside config/default", o.GetName())
		}
		if o.GetKind() == "Deployment" {
			if o.GetName() != "driftd-shard-a" {
				t.Errorf("Deployment %s, want driftd-shard-a", o.GetName())
			}
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			args, _, _ = unstructured.NestedSlice(containers[0].(map[string]any), "args")
		}
	}
	got := fmt.Sprint(args)
	for _, want := range []string{"--shard=fleet.example.com/shard=a", "--owner=driftd-shard-a", "--leader-elect"} {
		if !strings.Contains(got, want) {
			t.Errorf("shard Deployment args %s lack %s", got, want)
		}
	}
	ctx := context.Background()
	// The overlay runs beside config/default, which created driftd's namespace.
	for _, o := range testenv.ReadObjects(t, filepath.Join(root, "config/default/namespace.yaml")) {
		if err := env.Client.Patch(ctx, o, client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range res.Objects {
		if err := env.Client.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}
