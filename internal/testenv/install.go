package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// InstallNamespace applies driftd's own Namespace as a user installs it — config/default's
// namespace.yaml with kubectl's field manager — under name (a test gives each daemon its own, so
// that they share no lease or status ConfigMap). A fleet's namespaces come from its repository,
// never from here.
func (e *Env) InstallNamespace(ctx context.Context, name string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	path := filepath.Join(root, "config", "default", "namespace.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, err := DecodeObjects(data)
	if err != nil || len(objs) != 1 || objs[0].GetKind() != "Namespace" {
		return fmt.Errorf("%s: want one Namespace (%v)", path, err)
	}
	objs[0].SetName(name)
	return e.Client.Patch(ctx, objs[0], client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership)
}

// Kustomize builds dir (a folder of this repository, or any folder) as `kubectl kustomize` does.
func Kustomize(tb testing.TB, dir string) []*unstructured.Unstructured {
	tb.Helper()
	if !filepath.IsAbs(dir) {
		root, err := ModuleRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, dir)
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		tb.Fatalf("kustomize %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			tb.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			tb.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// InstallRBAC applies the Namespace, ServiceAccount and RBAC of config/default, as deploying
// driftd does, and waits until the aggregated ClusterRole holds its rules, so that a test can run
// driftd as its ServiceAccount (ImpersonatingKubeconfig).
func (e *Env) InstallRBAC(tb testing.TB) {
	tb.Helper()
	e.Apply(tb, "kubectl", Select(Kustomize(tb, "config/default"), func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "Namespace" || o.GetKind() == "ServiceAccount" || o.GroupVersionKind().Group == rbacv1.GroupName
	}))
	e.WaitForAggregatedRole(tb, "driftd")
}

// Apply server-side applies objs as manager, forcing ownership (kubectl apply --server-side).
func (e *Env) Apply(tb testing.TB, manager string, objs []*unstructured.Unstructured) {
	tb.Helper()
	for _, o := range objs {
		if err := e.Client.Patch(context.Background(), o.DeepCopy(), client.Apply, client.FieldOwner(manager), client.ForceOwnership); err != nil {
			tb.Fatalf("applying %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// Select returns the objects keep accepts.
func Select(objs []*unstructured.Unstructured, keep func(*unstructured.Unstructured) bool) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// WaitForAggregatedRole waits until the aggregation controller filled ClusterRole name.
func (e *Env) WaitForAggregatedRole(tb testing.TB, name string) {
	tb.Helper()
	Eventually(tb, 30*time.Second, fmt.Sprintf("ClusterRole %s aggregated", name), func() bool {
		role := &rbacv1.ClusterRole{}
		return e.Client.Get(context.Background(), client.ObjectKey{Name: name}, role) == nil && len(role.Rules) > 0
	})
}

// ImpersonatingKubeconfig writes a kubeconfig of the test bed that acts as user (a ServiceAccount:
// system:serviceaccount:<namespace>:<name>), at server when it is not "" (an APIProxy in between).
func (e *Env) ImpersonatingKubeconfig(tb testing.TB, user, server string) string {
	tb.Helper()
	cfg, err := clientcmd.LoadFromFile(e.KubeconfigFile(tb))
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	if server != "" {
		for _, c := range cfg.Clusters {
			c.Server = server
		}
	}
	out := filepath.Join(tb.TempDir(), "kubeconfig-impersonating")
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		tb.Fatal(err)
	}
	return out
}
