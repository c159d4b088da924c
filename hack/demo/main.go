// Command demo shows driftd at work on a local management cluster with Cluster API's own
// controllers running: `make demo`.
//
// It starts the test bed — kube-apiserver and etcd, Cluster API's core, kubeadm bootstrap and
// control plane controllers with their webhooks, the development provider's in-memory backend
// (which fakes each workload cluster's machines, API server and Nodes) and its inventory endpoint —
// turns a development cluster into a signed git repository, runs `driftd run --prune --provider
// in-memory` against it from an empty management cluster, and then does what happens to fleets:
// a MachineDeployment scaled by hand, a machine deleted in the cloud behind Cluster API's back, an
// immutable template edited in Git. driftd's Events are printed as they come, with what Cluster API
// does about them, and a final `driftd plan`. DEMO_KEEP=1 leaves everything running.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/sandbox"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const ns = "fleet-dev"

func main() {
	sandbox.RunChildIfAsked() // driftd renders in a child process of this binary
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context) error {
	began := time.Now()
	say("Starting a management cluster with Cluster API's controllers and webhooks (core, kubeadm bootstrap and\n    control plane, the in-memory development provider) and an inventory endpoint for its machines")
	env, err := testenv.StartCAPI()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	c := driver.New(env.Env)

	work, err := os.MkdirTemp("", "driftd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repo, key, keyring, err := fleetRepo(work)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	config := filepath.Join(work, "driftd.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("inventories:\n- provider: in-memory\n  url: %s\n  infrastructureKinds: [DevCluster]\n  tokenFile: %s\n",
		env.Inventory, env.InventoryTokenFile)), 0o600); err != nil {
		return err
	}
	// driftd's own namespace, as applying config/default creates it. The fleet's namespace comes
	// from the fleet repository.
	if err := env.InstallNamespace(ctx, "driftd-system"); err != nil {
		return err
	}

	source := []string{"--repo", repo.dir, "--ref", "main", "--path", "fleet", "--kubeconfig", kubeconfig, "--verify-signatures", keyring}
	say("driftd run --repo %s --path fleet --prune --provider in-memory --config driftd.yaml --verify-signatures %s\n    (the fleet: the development cluster dev1 — a kubeadm control plane, a MachineDeployment of 2 with a\n    MachineHealthCheck — and its Namespace, into an empty management cluster; the commit is signed, and only\n    commits signed by a key of the keyring are applied; driftd.yaml names the inventory endpoint)", repo.dir, filepath.Base(keyring))
	var logs testenv.SyncBuffer
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- driver.Exec(runCtx, &logs, &logs, append([]string{"run", "--namespace", "driftd-system", "--interval", "5s", "--cloud-interval", "2s",
			"--prune", "--provider", "in-memory", "--config", config, "--git-cache-dir", filepath.Join(work, "cache"),
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}, source...)...)
	}()
	defer func() { stopRun(); <-done }()
	go printEvents(runCtx, env.Env)

	say("Cluster API brings the cluster up")
	if err := until(ctx, 3*time.Minute, func() bool { return running(ctx, c, "dev1") == 3 && len(pool(ctx, c)) == 2 }); err != nil {
		return fmt.Errorf("the fleet did not come up: %w\n%s", err, logs.String())
	}
	say("dev1 is up: %s", describe(ctx, c))

	say("Out of band #1: `kubectl scale machinedeployment dev1-md-0 --replicas=5`")
	scale := &unstructured.Unstructured{}
	scale.SetGroupVersionKind(diff.GVKMachineDeployment)
	scale.SetNamespace(ns)
	scale.SetName("dev1-md-0")
	if err := c.Client.SubResource("scale").Patch(ctx, scale, client.RawPatch(ktypes.MergePatchType, []byte(`{"spec":{"replicas":5}}`)), client.FieldOwner("kubectl-scale")); err != nil {
		return err
	}
	if err := until(ctx, time.Minute, func() bool {
		return c.Replicas(ns, "dev1-md-0") == 2 && len(pool(ctx, c)) == 2 && running(ctx, c, "dev1") == 3
	}); err != nil {
		return err
	}
	say("driftd put Git's 2 replicas back, Cluster API kept (or brought back) 2 workers: %s", describe(ctx, c))

	workers := pool(ctx, c)
	victim := workers[0]
	pid, _, _ := unstructured.NestedString(victim.Object, "spec", "providerID")
	say("Out of band #2: in the cloud, the instance %s of Machine %s is deleted", pid, victim.GetName())
	if err := env.OutOfBand(ctx, strings.TrimPrefix(pid, "in-memory://"), "delete"); err != nil {
		return err
	}
	if err := until(ctx, 2*time.Minute, func() bool {
		now := pool(ctx, c)
		return len(now) == 2 && running(ctx, c, "dev1") == 3 && !slices.ContainsFunc(now, func(m *unstructured.Unstructured) bool { return m.GetUID() == victim.GetUID() })
	}); err != nil {
		return err
	}
	say("The MachineHealthCheck remediated the Machine driftd marked, and the MachineSet replaced it: %s", describe(ctx, c))

	say("In Git: the worker template edited in place (Cluster API templates are immutable)")
	if err := repo.commit(key, "workers boot slower", func(s string) string {
		return strings.Replace(s, `startupDuration: "3s"`, `startupDuration: "4s"`, 1)
	}); err != nil {
		return err
	}
	if err := until(ctx, time.Minute, func() bool { return failed(ctx, env.Env, "dev1-md-0") }); err != nil {
		return err
	}
	say("The webhook said no, driftd said why and how, and nothing else changed: %s", describe(ctx, c))

	say("driftd plan --provider in-memory --config driftd.yaml: what Git, the cluster and the cloud still disagree on")
	_ = driver.Exec(ctx, os.Stdout, os.Stderr, append([]string{"plan", "--git-cache-dir", filepath.Join(work, "plan-cache"), "--provider", "in-memory", "--config", config}, source...)...)

	say("%s from an empty management cluster", time.Since(began).Round(time.Second))
	if os.Getenv("DEMO_KEEP") == "1" {
		say("Everything keeps running (Ctrl-C ends it):\n    export KUBECONFIG=%s\n    kubectl get clusters,machinedeployments,machines -n %s\n    kubectl get events -n %s --field-selector reportingComponent=driftd\n    kubectl get configmap driftd-status-driftd -n driftd-system -o yaml", kubeconfig, ns, ns)
		<-ctx.Done()
	}
	say("Done")
	return nil
}

// gitRepo is the demo's git repository.
type gitRepo struct {
	dir  string
	repo *git.Repository
}

// fleetRepo makes a git repository of the test bed's development cluster dev1 — one control plane
// machine, quick workers — its commit signed by a new OpenPGP key, and returns it with the keyring
// file that trusts that key.
func fleetRepo(work string) (*gitRepo, *openpgp.Entity, string, error) {
	key, err := openpgp.NewEntity("Platform Team", "demo", "platform@example.com", nil)
	if err != nil {
		return nil, nil, "", err
	}
	keyring := filepath.Join(work, "trusted-keys.asc")
	f, err := os.Create(keyring)
	if err != nil {
		return nil, nil, "", err
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
		return nil, nil, "", err
	}
	cluster := strings.NewReplacer("replicas: 3", "replicas: 1", `startupDuration: "10s"`, `startupDuration: "3s"`).Replace(fleet.Read("capi/dev1.yaml"))
	dir := filepath.Join(work, "fleet")
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		return nil, nil, "", err
	}
	r := &gitRepo{dir: dir, repo: repo}
	return r, key, keyring, r.write(key, "the fleet", fleet.New(ns).Add("dev1.yaml", cluster).Files())
}

// commit changes fleet/dev1.yaml with edit and commits it, signed.
func (r *gitRepo) commit(key *openpgp.Entity, message string, edit func(string) string) error {
	b, err := os.ReadFile(filepath.Join(r.dir, "fleet/dev1.yaml"))
	if err != nil {
		return err
	}
	return r.write(key, message, map[string]string{"fleet/dev1.yaml": edit(string(b))})
}

func (r *gitRepo) write(key *openpgp.Entity, message string, files map[string]string) error {
	wt, err := r.repo.Worktree()
	if err != nil {
		return err
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Join(r.dir, filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.dir, p), []byte(content), 0o644); err != nil {
			return err
		}
		if _, err := wt.Add(p); err != nil {
			return err
		}
	}
	_, err = wt.Commit(message, &git.CommitOptions{Author: &object.Signature{Name: "platform", Email: "platform@example.com", When: time.Now()}, SignKey: key})
	return err
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
				note := e.Note
				if len(note) > 400 {
					note = note[:400] + "…"
				}
				fmt.Printf("    [Event %s] %-28s %s %s: %s\n", e.Type, e.Reason, e.Regarding.Kind, e.Regarding.Name, note)
			}
		}()
	}
}

// pool returns dev1-md-0's Machines, ordered by name.
func pool(ctx context.Context, c *driver.Driver) []*unstructured.Unstructured {
	return machines(ctx, c, map[string]string{"cluster.x-k8s.io/deployment-name": "dev1-md-0"})
}

func machines(ctx context.Context, c *driver.Driver, labels map[string]string) []*unstructured.Unstructured {
	ms, _ := c.List(ctx, diff.GVKMachine, ns, labels)
	return ms
}

// running counts a cluster's Machines that are Running with a Node.
func running(ctx context.Context, c *driver.Driver, cluster string) int {
	return driver.Running(machines(ctx, c, map[string]string{"cluster.x-k8s.io/cluster-name": cluster}))
}

// describe lists dev1's Machines with their phases.
func describe(ctx context.Context, c *driver.Driver) string {
	var parts []string
	for _, m := range machines(ctx, c, map[string]string{"cluster.x-k8s.io/cluster-name": "dev1"}) {
		phase, _, _ := unstructured.NestedString(m.Object, "status", "phase")
		parts = append(parts, m.GetName()+" "+phase)
	}
	return "\n      " + strings.Join(parts, "\n      ")
}

// failed reports whether driftd recorded CorrectionFailed on the DevMachineTemplate.
func failed(ctx context.Context, env *testenv.Env, name string) bool {
	l := &eventsv1.EventList{}
	if env.Client.List(ctx, l, client.InNamespace(ns)) != nil {
		return false
	}
	return slices.ContainsFunc(l.Items, func(e eventsv1.Event) bool {
		return e.ReportingController == "driftd" && e.Reason == "CorrectionFailed" && e.Regarding.Kind == "DevMachineTemplate" && e.Regarding.Name == name
	})
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
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
