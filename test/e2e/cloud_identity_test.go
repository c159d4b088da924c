package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/vmware/govmomi/find"
	govobject "github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const roleInB = "arn:aws:iam::222222222222:role/driftd-reader"

// accountB is CAPA's identities as a platform team keeps them in Git: the controller's default,
// and a role in account B that namespace allowed may use.
func accountB(allowed string) string {
	return identitiesB("{list: ["+allowed+"]}", "{}")
}

// identitiesB is the controller's default identity and the role in account B chained from it,
// each with the allowedNamespaces given (YAML).
func identitiesB(roleAllowed, controllerAllowed string) string {
	return fmt.Sprintf(`apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSClusterControllerIdentity
metadata:
  name: default
spec:
  allowedNamespaces: %s
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSClusterRoleIdentity
metadata:
  name: account-b
spec:
  roleARN: %s
  externalID: fleet-42
  sourceIdentityRef: {kind: AWSClusterControllerIdentity, name: default}
  allowedNamespaces: %s
`, controllerAllowed, roleInB, roleAllowed)
}

// countAssumeRole puts a proxy in front of moto that counts STS AssumeRole calls.
func countAssumeRole(t *testing.T, cloud *awsCloud) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	motoProxy(t, cloud, func(body []byte) {
		if bytes.Contains(body, []byte("Action=AssumeRole")) {
			n.Add(1)
		}
	})
	return &n
}

// TestEachClusterIsReadWithItsOwnAWSIdentity: the cluster's instances live in account B; driftd
// holds account A's keys. Through the cluster's AWSClusterRoleIdentity it sees them and replaces a
// terminated one; once the identity no longer allows the cluster's namespace, or is gone, the
// cluster's inventory is unavailable — never empty — and nothing is written.
func TestEachClusterIsReadWithItsOwnAWSIdentity(t *testing.T) {
	ns := "account-b"
	cloud := newAWSCloud(t)
	cfgB, err := cloud.moto.AWSConfigAs(context.Background(), "eu-west-1", roleInB)
	if err != nil {
		t.Fatal(err)
	}
	inB := ec2.NewFromConfig(cfgB)
	files := fleet.New(ns).Add("identities.yaml", accountB(ns)).Add("tenant.yaml", poolCluster("tenant", 8, "AWSClusterRoleIdentity/account-b")).Files()
	repo := testenv.NewGitRepo(t, files)
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "aws")
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	ids := provisionPool(t, cloud, ns, "tenant", 8, inB)

	if code, doc, stderr := drv.Plan(t, args...); code != 0 {
		t.Fatalf("plan of a cluster in account B, read through its role: exit %d, findings %+v\n%s", code, doc.Findings, stderr)
	}
	cloud.terminateWith(t, inB, ids["tenant-md-0-m1"])
	_, doc, _ := drv.Plan(t, args...)
	if f := doc.Finding("Machine", "tenant-md-0-m1"); f == nil || f.Class != diff.ClassInstanceMissing || f.Action != diff.ActionReplace {
		t.Fatalf("finding %+v, want InstanceMissing to replace", f)
	}
	drv.RunOnce(t, ns, args...)
	if s := env.MachineState(t, ns, "tenant-md-0-m1"); s != "remediate" {
		t.Errorf("tenant-md-0-m1 %q, want annotated", s)
	}

	assumed := countAssumeRole(t, cloud)
	// Each form CAPA refuses (isClusterPermittedToUsePrincipal, pkg/cloud/scope/session.go:409) is
	// refused before any role is assumed.
	for _, tc := range []struct{ name, identities, reason string }{
		{"not allowed for the namespace", accountB("someone-else"), "allowedNamespaces"},
		{"listed elsewhere with the empty selector CAPA's webhook stores", identitiesB("{list: [someone-else], selector: {}}", "{}"), "allowedNamespaces"},
		{"an empty list", identitiesB("{list: []}", "{}"), "allowedNamespaces"},
		{"a source identity of the chain that does not allow the namespace", identitiesB("{list: ["+ns+"]}", "{list: [someone-else]}"), "AWSClusterControllerIdentity default: its namespace is not among"},
		{"removed", testenv.Delete, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			change := map[string]string{"fleet/identities.yaml": tc.identities}
			if tc.identities == testenv.Delete {
				change["fleet/kustomization.yaml"] = fleet.Kustomization(ns, "tenant.yaml")
				for _, kind := range []string{"AWSClusterRoleIdentity", "AWSClusterControllerIdentity"} {
					u := &unstructured.Unstructured{}
					u.SetAPIVersion("infrastructure.cluster.x-k8s.io/v1beta2")
					u.SetKind(kind)
					u.SetName(map[string]string{"AWSClusterRoleIdentity": "account-b", "AWSClusterControllerIdentity": "default"}[kind])
					_ = env.Client.Delete(context.Background(), u)
				}
			}
			repo.Commit(t, "identity "+tc.name, change)
			drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...) // Git applied
			cloud.terminateWith(t, inB, ids["tenant-md-0-m2"])
			before := machineUIDs(t, ns)
			calls := assumed.Load()
			code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
			if n := assumed.Load() - calls; n != 0 {
				t.Errorf("%d AssumeRole calls with an identity the namespace may not use", n)
			}
			if code != 1 || !strings.Contains(errOut, "inventory of cluster "+ns+"/tenant unavailable") || !strings.Contains(errOut, tc.reason) {
				t.Errorf("run --once: exit %d, want 1 with the tenant's inventory unavailable (%s)\n%s%s", code, tc.reason, out, errOut)
			}
			if strings.Contains(out, "InstanceMissing") {
				t.Errorf("InstanceMissing reported without the cluster's identity:\n%s", out)
			}
			if after := machineUIDs(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("Machines changed: %v → %v", before, after)
			}
		})
	}
	if !driver.HasEvent(drv.StatusEvents(t, ns), "InventoryUnavailable") {
		t.Error("no InventoryUnavailable Event on the status ConfigMap")
	}
}

func (c *awsCloud) terminateWith(t *testing.T, client *ec2.Client, ids ...string) {
	t.Helper()
	_, err := client.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: ids})
	c.do(t, "TerminateInstances", err)
}

// vsphereFleet is a vSphere cluster in namespace ns on server whose VSphereCluster names identity
// (kind/name).
func vsphereFleet(ns, name, server, thumbprint, identity string, nsLabels map[string]string) map[string]string {
	kind, id, _ := strings.Cut(identity, "/")
	labels := ""
	for k, v := range nsLabels {
		labels += fmt.Sprintf("\n    %s: %s", k, v)
	}
	if labels != "" {
		labels = "\n  labels:" + labels
	}
	return map[string]string{
		"fleet/kustomization.yaml": fleet.Kustomization(ns, "vs.yaml"),
		"fleet/namespace.yaml":     fleet.Namespace(ns) + labels + "\n",
		"fleet/vs.yaml": fmt.Sprintf(`apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: %[1]s
spec:
  infrastructureRef: {apiGroup: infrastructure.cluster.x-k8s.io, kind: VSphereCluster, name: %[1]s}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: VSphereCluster
metadata:
  name: %[1]s
spec:
  server: %[2]s
  thumbprint: %[3]q
  identityRef: {kind: %[4]s, name: %[5]s}
`, name, server, thumbprint, kind, id),
	}
}

// capv installs what CAPV's installation holds for a VSphereClusterIdentity: its namespace and the
// identity's Secret; and the identity itself, allowed where selector matches.
func capv(tb testing.TB, name, user, password string, selector map[string]any) {
	tb.Helper()
	ctx := context.Background()
	drv.Namespace(tb, "capv-system")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "capv-system", Name: name}, StringData: map[string]string{"username": user, "password": password}}
	if err := env.Client.Create(ctx, s); err != nil {
		tb.Fatal(err)
	}
	id := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"secretName": name,
		"allowedNamespaces": map[string]any{"selector": selector}}}}
	id.SetAPIVersion("infrastructure.cluster.x-k8s.io/v1beta1")
	id.SetKind("VSphereClusterIdentity")
	id.SetName(name)
	if err := env.Client.Create(ctx, id); err != nil {
		tb.Fatal(err)
	}
	// CAPV's identity controller marks an identity ready once its Secret exists.
	_ = unstructured.SetNestedField(id.Object, true, "status", "ready")
	if err := env.Client.Status().Update(ctx, id); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), s)
		_ = env.Client.Delete(context.Background(), id)
	})
}

// TestAPrivilegedVSphereIdentityGoesNowhereItIsNotAllowed: CAPV's rule, kept by driftd. A
// VSphereClusterIdentity's credentials are used only for clusters in namespaces it allows, and only
// towards the server Git names: a tenant who points their VSphereCluster at their own host (and
// freezes it with driftd.io/reconcile: disabled) receives no login.
func TestAPrivilegedVSphereIdentityGoesNowhereItIsNotAllowed(t *testing.T) {
	vcenter := testenv.RequireVCSim(t, nil)
	tenantHost := testenv.RequireVCSim(t, nil)
	for _, sim := range []*testenv.VCSim{vcenter, tenantHost} {
		sim.AddUser("platform-admin", "platform-pw")
	}
	capv(t, "platform", "platform-admin", "platform-pw", map[string]any{"matchLabels": map[string]any{"tenancy": "platform"}})
	vsArgs := func(repo *testenv.GitRepo, ns string) []string {
		return append(drv.Args(t, repo.Dir, ns), "--provider", "vsphere", "--vsphere-identity-namespace", "capv-system")
	}

	t.Run("a namespace the identity does not allow", func(t *testing.T) {
		ns := "vs-not-allowed"
		repo := testenv.NewGitRepo(t, vsphereFleet(ns, "edge", vcenter.URL.Host, vcenter.Thumbprint(), "VSphereClusterIdentity/platform", nil))
		drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
		code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, vsArgs(repo, ns)...)...)
		errOut = out + errOut
		if code != 1 || !strings.Contains(errOut, "allowedNamespaces") {
			t.Errorf("run --once: exit %d, want 1 with the inventory unavailable\n%s", code, errOut)
		}
		if n := vcenter.Logins("platform-admin"); n != 0 {
			t.Errorf("%d logins with the platform identity for a namespace it does not allow", n)
		}
	})

	t.Run("a server the tenant put there", func(t *testing.T) {
		ns := "vs-tenant"
		files := vsphereFleet(ns, "edge", vcenter.URL.Host, vcenter.Thumbprint(), "VSphereClusterIdentity/platform", map[string]string{"tenancy": "platform"})
		repo := testenv.NewGitRepo(t, files)
		drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
		if code, _, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, vsArgs(repo, ns)...)...); code != 0 || vcenter.Logins("platform-admin") != 1 {
			t.Fatalf("the allowed cluster: exit %d, %d logins; want one at the vCenter Git names\n%s", code, vcenter.Logins("platform-admin"), errOut)
		}
		vc := &unstructured.Unstructured{}
		vc.SetAPIVersion("infrastructure.cluster.x-k8s.io/v1beta1")
		vc.SetKind("VSphereCluster")
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "edge"}, vc); err != nil {
			t.Fatal(err)
		}
		vc.SetAnnotations(map[string]string{diff.AnnotationReconcile: "disabled"})
		_ = unstructured.SetNestedField(vc.Object, tenantHost.URL.Host, "spec", "server")
		_ = unstructured.SetNestedField(vc.Object, tenantHost.Thumbprint(), "spec", "thumbprint")
		if err := env.Client.Update(context.Background(), vc, client.FieldOwner("tenant")); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, vsArgs(repo, ns)...)...)
		errOut = out + errOut
		if code != 1 || !strings.Contains(errOut, "Git") {
			t.Errorf("run --once: exit %d, want 1 with the inventory unavailable (server differs from Git)\n%s", code, errOut)
		}
		if n := tenantHost.Logins("platform-admin"); n != 0 {
			t.Errorf("the tenant's host received %d logins with the platform's credentials", n)
		}
	})
}

// TestAGeneratedVSphereClusterGetsALoginOnlyWhereItsClassSays: a VSphereCluster Cluster API
// generates from a ClusterClass is not in Git itself; driftd logs in with the privileged identity
// only at the server the class' VSphereClusterTemplate names, never at one the live object was
// changed to.
func TestAGeneratedVSphereClusterGetsALoginOnlyWhereItsClassSays(t *testing.T) {
	ctx := context.Background()
	vcenter := testenv.RequireVCSim(t, nil)
	tenantHost := testenv.RequireVCSim(t, nil)
	for _, sim := range []*testenv.VCSim{vcenter, tenantHost} {
		sim.AddUser("class-admin", "class-pw")
	}
	capv(t, "class-identity", "class-admin", "class-pw", map[string]any{"matchLabels": map[string]any{"tenancy": "platform"}})
	ns := "vs-generated"
	repo := testenv.NewGitRepo(t, map[string]string{
		"fleet/kustomization.yaml": fleet.Kustomization(ns, "class.yaml"),
		"fleet/namespace.yaml":     fleet.Namespace(ns) + "  labels:\n    tenancy: platform\n",
		"fleet/class.yaml": fmt.Sprintf(`apiVersion: cluster.x-k8s.io/v1beta2
kind: ClusterClass
metadata:
  name: vsphere
spec:
  infrastructure:
    templateRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: VSphereClusterTemplate, name: vsphere}
  controlPlane:
    templateRef: {apiVersion: controlplane.cluster.x-k8s.io/v1beta2, kind: KubeadmControlPlaneTemplate, name: vsphere}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: VSphereClusterTemplate
metadata:
  name: vsphere
spec:
  template:
    spec:
      server: %s
      thumbprint: %q
      identityRef: {kind: VSphereClusterIdentity, name: class-identity}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: gen
spec:
  topology:
    classRef: {name: vsphere}
    version: v1.34.1
`, vcenter.URL.Host, vcenter.Thumbprint()),
	})
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	// What Cluster API's topology controller makes of it (no CAPI controller runs here): the
	// VSphereCluster from the template, and the Cluster's reference to it.
	vc := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"server": vcenter.URL.Host, "thumbprint": vcenter.Thumbprint(),
		"identityRef": map[string]any{"kind": "VSphereClusterIdentity", "name": "class-identity"}}}}
	vc.SetAPIVersion("infrastructure.cluster.x-k8s.io/v1beta1")
	vc.SetKind("VSphereCluster")
	vc.SetNamespace(ns)
	vc.SetName("gen-x7k2p")
	if err := env.Client.Patch(ctx, vc, client.Apply, client.FieldOwner("capi-topology"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	cluster := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"infrastructureRef": map[string]any{
		"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "VSphereCluster", "name": "gen-x7k2p"}}}}
	cluster.SetAPIVersion("cluster.x-k8s.io/v1beta2")
	cluster.SetKind("Cluster")
	cluster.SetNamespace(ns)
	cluster.SetName("gen")
	if err := env.Client.Patch(ctx, cluster, client.Apply, client.FieldOwner("capi-topology")); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--once", "--namespace", ns}, append(drv.Args(t, repo.Dir, ns), "--provider", "vsphere", "--vsphere-identity-namespace", "capv-system")...)
	if code, out, errOut := drv.Exec(ctx, args...); code != 0 || vcenter.Logins("class-admin") != 1 {
		t.Fatalf("the generated VSphereCluster at its class' server: exit %d, %d logins; want one\n%s%s", code, vcenter.Logins("class-admin"), out, errOut)
	}

	unstructured.RemoveNestedField(vc.Object, "metadata", "managedFields")
	vc.SetResourceVersion("")
	_ = unstructured.SetNestedField(vc.Object, tenantHost.URL.Host, "spec", "server")
	_ = unstructured.SetNestedField(vc.Object, tenantHost.Thumbprint(), "spec", "thumbprint")
	if err := env.Client.Patch(ctx, vc, client.Apply, client.FieldOwner("tenant"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := drv.Exec(ctx, args...)
	if code != 1 || !strings.Contains(out+errOut, "generated from ClusterClass "+ns+"/vsphere") {
		t.Errorf("run --once: exit %d, want 1 with the inventory unavailable (server not the class')\n%s%s", code, out, errOut)
	}
	if n := tenantHost.Logins("class-admin"); n != 0 {
		t.Errorf("the tenant's host received %d logins with the class' identity", n)
	}
}

// TestVMsAnIdentityCannotSeeAreNeverMissing: the cluster's identity may see only some folders
// (vCenter permissions). A Machine whose VM lives where it cannot see is never InstanceMissing; one
// in a folder it sees is, once its VM is gone.
func TestVMsAnIdentityCannotSeeAreNeverMissing(t *testing.T) {
	ctx := context.Background()
	ns := "vs-visibility"
	sim := testenv.RequireVCSim(t, func(m *simulator.Model) { m.Machine = 2 })
	sim.AddUser("tenant", "tenant-pw")
	sim.HideFolders("tenant", "restricted")
	c, err := sim.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := find.NewFinder(c.Client, true).Datacenter(ctx, "DC0")
	if err != nil {
		t.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restricted, err := folders.VmFolder.CreateFolder(ctx, "restricted")
	if err != nil {
		t.Fatal(err)
	}
	vms, _ := sim.VMs(ctx)
	if task, err := restricted.MoveInto(ctx, []types.ManagedObjectReference{vms[0].Reference()}); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("moving a VM: %v", err)
	}

	repo := testenv.NewGitRepo(t, vsphereFleet(ns, "edge", sim.URL.Host, sim.Thumbprint(), "Secret/edge-credentials", nil))
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-credentials"},
		StringData: map[string]string{"username": "tenant", "password": "tenant-pw"}}); err != nil {
		t.Fatal(err)
	}
	for i, folder := range []string{"/DC0/vm/restricted", "/DC0/vm"} {
		name := fmt.Sprintf("edge-md-0-m%d", i)
		env.ProvisionMachine(t, ns, "edge", "edge-md-0", name, "vsphere://"+strings.ToLower(vms[i].Config.Uuid), gvkVSMachine, map[string]any{
			"server": sim.URL.Host, "template": "ubuntu-2204", "folder": folder, "numCPUs": int64(vms[i].Config.Hardware.NumCPU),
			"memoryMiB": int64(vms[i].Config.Hardware.MemoryMB), "network": map[string]any{"devices": []any{map[string]any{"networkName": "VM Network", "dhcp4": true}}},
		})
	}
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "vsphere")
	_, doc, stderr := drv.Plan(t, args...)
	if f := doc.Finding("Machine", "edge-md-0-m0"); f != nil {
		t.Errorf("the Machine whose VM the identity cannot see: %+v\n%s", f, stderr)
	}

	// Both VMs go; only the one the identity can see is known to be gone.
	for _, vm := range vms[:2] {
		o := govobject.NewVirtualMachine(c.Client, vm.Reference())
		if task, err := o.PowerOff(ctx); err == nil {
			_ = task.Wait(ctx)
		}
		if task, err := o.Destroy(ctx); err != nil || task.Wait(ctx) != nil {
			t.Fatalf("destroying a VM: %v", err)
		}
	}
	_, doc, _ = drv.Plan(t, args...)
	if f := doc.Finding("Machine", "edge-md-0-m0"); f != nil && f.Class == diff.ClassInstanceMissing {
		t.Errorf("InstanceMissing for a VM the identity cannot see: %+v", f)
	}
	if f := doc.Finding("Machine", "edge-md-0-m1"); f == nil || f.Class != diff.ClassInstanceMissing {
		t.Errorf("the Machine whose VM is gone from a visible folder: %+v, want InstanceMissing", f)
	}
}
