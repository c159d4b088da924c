// Command demo shows driftd at work on a local management cluster: `make demo`.
//
// It starts the test bed's control plane with the Cluster API CRDs and govmomi's vSphere
// simulator in-process, turns the vSphere cluster of examples/fleet-repo into a local git
// repository pointed at the simulator, brings its "already provisioned" state into being (Machines
// whose providerIDs name simulator VMs), runs `driftd run` against it, and then edits things out of
// band — a MachineDeployment scaled by another field manager, a VM resized, a VM powered off —
// printing driftd's Events as they come, and a final `driftd plan`.
//
// No Cluster API controller runs here: where a replacement needs one (a MachineHealthCheck acting
// on the remediate annotation), the demo says what would happen. DEMO_KEEP=1 leaves everything
// running and prints how to poke at it.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	govobject "github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

const ns = "fleet-production"

var (
	gvkMD      = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "MachineDeployment"}
	gvkMachine = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Machine"}
	gvkVSM     = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "VSphereMachine"}
)

func main() {
	log.SetOutput(io.Discard) // the simulator logs each TLS handshake govmomi retries with the thumbprint
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context) error {
	say("Starting a management cluster (kube-apiserver + etcd with the Cluster API, CAPA and CAPV CRDs)")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	say("Starting the vSphere simulator")
	sim, err := testenv.StartVCSim(func(m *simulator.Model) { m.Host, m.Machine = 0, 3 })
	if err != nil {
		return err
	}
	defer sim.Stop()
	vc, err := sim.Client(ctx)
	if err != nil {
		return err
	}
	vms, err := sim.VMs(ctx)
	if err != nil {
		return err
	}
	// "Already provisioned": the VMs have the size the fleet's VSphereMachineTemplate asks for.
	for _, vm := range vms {
		if err := wait(govobject.NewVirtualMachine(vc.Client, vm.Reference()).Reconfigure(ctx, types.VirtualMachineConfigSpec{NumCPUs: 8, MemoryMB: 16384})); err != nil {
			return err
		}
	}

	work, err := os.MkdirTemp("", "driftd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repoDir, keyring, err := fleetRepo(work, sim)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := writeKubeconfig(env, kubeconfig); err != nil {
		return err
	}
	c := env.Client
	// driftd's own namespace, as applying config/default creates it. The fleet's namespace comes
	// from the fleet repository.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "driftd-system"}}); err != nil {
		return err
	}

	source := []string{"--repo", repoDir, "--ref", "main", "--path", "clusters", "--kubeconfig", kubeconfig, "--verify-signatures", keyring}
	args := append([]string{"--namespace", "driftd-system", "--provider", "vsphere", "--max-replacements", "2",
		"--git-cache-dir", filepath.Join(work, "cache")}, source...)
	say("driftd run --repo %s --path clusters --provider vsphere --verify-signatures %s\n    (the fleet: examples/fleet-repo's vSphere cluster prod-edge and its Namespace, into an empty management\n    cluster; the commit is signed, and only commits signed by a key of the keyring are applied)", repoDir, filepath.Base(keyring))
	var logs testenv.SyncBuffer
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(runCtx, append([]string{"run", "--interval", "1m", "--cloud-interval", "2s",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, args...), &logs, &logs)
	}()
	defer func() { stopRun(); <-done }()
	go printEvents(runCtx, env)

	if err := until(ctx, 60*time.Second, func() bool { return exists(ctx, c, gvkMD, "prod-edge-md-0") }); err != nil {
		return fmt.Errorf("driftd did not create the fleet: %w\n%s", err, logs.String())
	}
	// The vCenter credentials the VSphereCluster names: never in Git; a sealed or external secret
	// puts them there once the namespace exists.
	pw, _ := sim.URL.User.Password()
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod-edge-vsphere-credentials"},
		StringData: map[string]string{"username": sim.URL.User.Username(), "password": pw}}); err != nil {
		return err
	}
	say("The fleet exists. Bringing its provisioned Machines into being (providerIDs point at simulator VMs)")
	for i, vm := range vms {
		if err := machine(ctx, c, fmt.Sprintf("prod-edge-md-0-m%d", i), "vsphere://"+strings.ToLower(vm.Config.Uuid), sim.URL.Host); err != nil {
			return err
		}
	}
	time.Sleep(3 * time.Second)

	say("Out of band #1: `kubectl scale machinedeployment prod-edge-md-0 --replicas=7` (field manager kubectl-scale)")
	md := &unstructured.Unstructured{}
	md.SetGroupVersionKind(gvkMD)
	md.SetNamespace(ns)
	md.SetName("prod-edge-md-0")
	if err := c.Patch(ctx, md, client.RawPatch(ktypes.MergePatchType, []byte(`{"spec":{"replicas":7}}`)), client.FieldOwner("kubectl-scale")); err != nil {
		return err
	}
	if err := until(ctx, 30*time.Second, func() bool { return replicas(ctx, c) == 4 }); err != nil {
		return err
	}
	say("driftd put replicas back to Git's 4")
	time.Sleep(time.Second)

	say("Out of band #2: in vCenter, VM %s resized to 2 CPUs / 4 GiB", vms[0].Name)
	if err := wait(govobject.NewVirtualMachine(vc.Client, vms[0].Reference()).Reconfigure(ctx, types.VirtualMachineConfigSpec{NumCPUs: 2, MemoryMB: 4096})); err != nil {
		return err
	}
	if err := until(ctx, 30*time.Second, func() bool { return annotated(ctx, c, "prod-edge-md-0-m0") }); err != nil {
		return err
	}
	say("Out of band #3: in vCenter, VM %s powered off", vms[1].Name)
	if err := wait(govobject.NewVirtualMachine(vc.Client, vms[1].Reference()).PowerOff(ctx)); err != nil {
		return err
	}
	if err := until(ctx, 30*time.Second, func() bool { return annotated(ctx, c, "prod-edge-md-0-m1") }); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	say(`Both Machines carry cluster.x-k8s.io/remediate-machine. No Cluster API controller runs in this demo;
    on a real management cluster the MachineHealthCheck prod-edge-md-0 would now remediate them under its
    own limits, and the MachineSet would create fresh Machines (and VMs) from the template.`)

	say("driftd plan (spec layer): what Git and the cluster still disagree on")
	code := cli.Execute(ctx, append([]string{"plan", "--git-cache-dir", filepath.Join(work, "plan-cache")}, source...), os.Stdout, os.Stderr)
	if code != 0 {
		return fmt.Errorf("the final plan found spec drift (exit %d)", code)
	}
	say("driftd plan --provider vsphere: the cloud layer, with the replacements in flight")
	_ = cli.Execute(ctx, append([]string{"plan", "--provider", "vsphere", "--git-cache-dir", filepath.Join(work, "plan-cache")}, source...), os.Stdout, os.Stderr)

	if os.Getenv("DEMO_KEEP") == "1" {
		say("Everything keeps running (Ctrl-C ends it):\n    export KUBECONFIG=%s\n    kubectl get clusters,machinedeployments,machines -n %s\n    kubectl get events -n %s --field-selector reportingComponent=driftd\n    kubectl get configmap driftd-status -n driftd-system -o yaml", kubeconfig, ns, ns)
		<-ctx.Done()
	}
	say("Done")
	return nil
}

// fleetRepo makes a git repository of examples/fleet-repo's vSphere cluster pointed at the
// simulator, its commit signed by a new OpenPGP key, and returns it with the keyring file that
// trusts that key.
func fleetRepo(work string, sim *testenv.VCSim) (string, string, error) {
	key, err := openpgp.NewEntity("Platform Team", "demo", "platform@example.com", nil)
	if err != nil {
		return "", "", err
	}
	keyring := filepath.Join(work, "trusted-keys.asc")
	f, err := os.Create(keyring)
	if err != nil {
		return "", "", err
	}
	w, err := armor.Encode(f, openpgp.PublicKeyType, nil)
	if err == nil {
		err = key.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", err
	}
	dir, err := commitFleet(work, sim, key)
	return dir, keyring, err
}

func commitFleet(work string, sim *testenv.VCSim, key *openpgp.Entity) (string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(filepath.Join(root, "examples/fleet-repo/clusters/production/edge-vsphere/cluster.yaml"))
	if err != nil {
		return "", err
	}
	fleet := strings.NewReplacer(
		"vcenter.edge.example.com", sim.URL.Host,
		`"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"`, `"`+sim.Thumbprint()+`"`,
		"/EDGE-DC/vm/prod-edge", "/DC0/vm", "EDGE-DC", "DC0",
	).Replace(string(src))
	files := map[string]string{
		"clusters/kustomization.yaml": "namespace: " + ns + "\nresources:\n- namespace.yaml\n- prod-edge.yaml\n",
		"clusters/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"clusters/prod-edge.yaml":     fleet,
	}
	dir := filepath.Join(work, "fleet")
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		return "", err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			return "", err
		}
		if _, err := wt.Add(p); err != nil {
			return "", err
		}
	}
	_, err = wt.Commit("the fleet", &git.CommitOptions{Author: &object.Signature{Name: "platform", Email: "platform@example.com", When: time.Now()}, SignKey: key})
	return dir, err
}

// machine creates a Running Machine of prod-edge-md-0 and its VSphereMachine, as Cluster API would have.
func machine(ctx context.Context, c client.Client, name, providerID, server string) error {
	vsm := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"server": server, "template": "ubuntu-2204-kube-v1.34.1", "folder": "/DC0/vm", "numCPUs": int64(8), "memoryMiB": int64(16384),
		"providerID": providerID, "network": map[string]any{"devices": []any{map[string]any{"networkName": "k8s-edge", "dhcp4": true}}},
	}}}
	vsm.SetGroupVersionKind(gvkVSM)
	vsm.SetNamespace(ns)
	vsm.SetName(name)
	vsm.SetLabels(map[string]string{diff.LabelClusterName: "prod-edge"})
	if err := c.Create(ctx, vsm); err != nil {
		return err
	}
	m := &unstructured.Unstructured{}
	m.SetGroupVersionKind(gvkMachine)
	m.SetNamespace(ns)
	m.SetName(name)
	m.SetLabels(map[string]string{diff.LabelClusterName: "prod-edge", diff.LabelDeploymentName: "prod-edge-md-0"})
	m.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "MachineSet", Name: "prod-edge-md-0-7d4f9", UID: "11111111-2222-3333-4444-555555555555"}})
	m.Object["spec"] = map[string]any{"clusterName": "prod-edge", "providerID": providerID, "version": "v1.34.1",
		"bootstrap":         map[string]any{"dataSecretName": name},
		"infrastructureRef": map[string]any{"apiGroup": gvkVSM.Group, "kind": gvkVSM.Kind, "name": name}}
	if err := c.Create(ctx, m); err != nil {
		return err
	}
	unstructured.SetNestedField(m.Object, "Running", "status", "phase")
	return c.Status().Update(ctx, m)
}

// printEvents prints driftd's Events as they are recorded.
func printEvents(ctx context.Context, env *testenv.Env) {
	cs := kubernetes.NewForConfigOrDie(env.Config)
	for _, namespace := range []string{ns, "driftd-system"} {
		w, err := cs.EventsV1().Events(namespace).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				e, ok := ev.Object.(*eventsv1.Event)
				if !ok || e.ReportingController != "driftd" {
					continue
				}
				fmt.Printf("    [Event %s] %-28s %s %s: %s\n", e.Type, e.Reason, e.Regarding.Kind, e.Regarding.Name, e.Note)
			}
		}()
	}
}

func exists(ctx context.Context, c client.Client, gvk schema.GroupVersionKind, name string) bool {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u) == nil
}

func replicas(ctx context.Context, c client.Client) int64 {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkMD)
	if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod-edge-md-0"}, u) != nil {
		return -1
	}
	r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	return r
}

func annotated(ctx context.Context, c client.Client, name string) bool {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkMachine)
	if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u) != nil {
		return false
	}
	_, ok := u.GetAnnotations()[diff.AnnotationRemediateMachine]
	return ok
}

func until(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func wait(task *govobject.Task, err error) error {
	if err != nil {
		return err
	}
	return task.Wait(context.Background())
}

func writeKubeconfig(env *testenv.Env, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["demo"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: env.Config.CertData, ClientKeyData: env.Config.KeyData}
	cfg.Contexts["demo"] = &clientcmdapi.Context{Cluster: "demo", AuthInfo: "admin"}
	cfg.CurrentContext = "demo"
	return clientcmd.WriteToFile(*cfg, path)
}
