package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/driftd/driftd/internal/sandbox"
)

// CAPI is a test bed with Cluster API's own controllers and admission webhooks running against
// it: core (with ClusterClass topologies), the kubeadm bootstrap and control plane providers, and
// the development infrastructure provider's in-memory backend (DevCluster, DevMachine), which fakes
// each workload cluster's API server, etcd and Nodes. They run in one process (hack/capi, built by
// `hack/testbin.sh capi`), which dies with the test binary and also serves driftd's inventory
// protocol for the in-memory machines.
type CAPI struct {
	*Env
	// Inventory is the URL of the inventory endpoint (inventory.driftd.io/v1) and
	// InventoryTokenFile the file holding the bearer token it requires.
	Inventory, InventoryTokenFile string
	// LogFile holds the controllers' log (removed by Stop).
	LogFile string

	cmd, gc          *exec.Cmd
	exited, gcExited chan struct{}
	gcLog            string
	work             string   // logs, kubeconfig, token: removed by Stop
	certDirs         []string // the webhooks' serving certificates: removed by Stop
}

// capiTestModule holds the development provider's CRDs and webhooks.
var capiTestModule = crdModule{Path: "sigs.k8s.io/cluster-api/test", Version: "v1.14.0", Dirs: []string{"infrastructure/docker/config/crd/bases"}}

// webhookManifests are the webhook configurations of the providers hack/capi runs.
var webhookManifests = []struct {
	module crdModule
	path   string
}{
	{CRDModules[0], "core/config/webhook/manifests.yaml"},
	{CRDModules[0], "bootstrap/kubeadm/config/webhook/manifests.yaml"},
	{CRDModules[0], "controlplane/kubeadm/config/webhook/manifests.yaml"},
	{capiTestModule, "infrastructure/docker/config/webhook/manifests.yaml"},
}

// servedResources are the resources hack/capi has webhooks for: the configurations' other
// entries (ClusterResourceSets, MachinePools, IPAM, Docker*) would only fail.
var servedResources = []string{"clusters", "clusterclasses", "machines", "machinesets", "machinedeployments", "machinedrainrules",
	"machinehealthchecks", "kubeadmconfigs", "kubeadmconfigtemplates", "kubeadmcontrolplanes", "kubeadmcontrolplanes/scale",
	"kubeadmcontrolplanetemplates", "devclusters", "devclustertemplates", "devmachines", "devmachinetemplates"}

// StartCAPI starts a control plane with the CRDs of CRDModules and of the development provider,
// labelled with the Cluster API contract versions they serve (as the providers' kustomizations do),
// then Cluster API's controllers, and installs their webhooks once they serve.
func StartCAPI() (*CAPI, error) {
	bin, err := capiBinary()
	if err != nil {
		return nil, err
	}
	crds, err := contractCRDs()
	if err != nil {
		return nil, err
	}
	env, err := start(envtest.CRDInstallOptions{CRDs: crds})
	if err != nil {
		return nil, err
	}
	c := &CAPI{Env: env}
	if err := c.startControllers(bin); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *CAPI) startControllers(bin string) error {
	work, err := os.MkdirTemp("", "driftd-capi-")
	if err != nil {
		return err
	}
	c.work = work
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := writeKubeconfig(c.Env, kubeconfig); err != nil {
		return err
	}
	c.InventoryTokenFile = filepath.Join(work, "inventory-token")
	if err := os.WriteFile(c.InventoryTokenFile, []byte(strconv.FormatInt(time.Now().UnixNano(), 36)+"\n"), 0o600); err != nil {
		return err
	}
	// The garbage collector, which deletes what a Cluster's deletion leaves to it (its Secrets):
	// kube-controller-manager with nothing else on.
	c.gcLog = filepath.Join(work, "kube-controller-manager.log")
	if c.gc, c.gcExited, err = startProcess(filepath.Join(c.assets, "kube-controller-manager"), []string{
		"--kubeconfig", kubeconfig, "--controllers", "garbage-collector-controller", "--leader-elect=false",
		"--secure-port=0", "--concurrent-gc-syncs=5",
	}, c.gcLog); err != nil {
		return err
	}
	// A port the controllers are given can be taken before they bind it (a connection of another
	// test binary gets it as its local port): they exit saying so, and start again on other ports.
	var hooks *envtest.WebhookInstallOptions
	var inventory string
	for attempt := 1; ; attempt++ {
		hooks, inventory, err = c.startCAPIProcess(bin, kubeconfig)
		if hooks != nil {
			c.certDirs = append(c.certDirs, hooks.LocalServingCertDir)
		}
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return err
	}
	select {
	case <-c.gcExited:
		return fmt.Errorf("kube-controller-manager exited; its log: %s", tail(c.gcLog))
	default:
	}
	c.Inventory = "http://" + inventory
	if err := hooks.Install(c.Config); err != nil {
		return fmt.Errorf("installing Cluster API's webhooks: %w", err)
	}
	return nil
}

// startCAPIProcess starts hack/capi on ports of its own and waits until it is ready; it returns
// its webhooks, ready to install, and the address of its inventory endpoint.
func (c *CAPI) startCAPIProcess(bin, kubeconfig string) (hooks *envtest.WebhookInstallOptions, inventory string, err error) {
	hooks = &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1", MaxTime: time.Minute}
	if err := loadWebhooks(hooks); err != nil {
		return nil, "", err
	}
	if err := hooks.PrepWithoutInstalling(); err != nil {
		return hooks, "", err
	}
	health := freeAddr()
	inventory = freeAddr()
	// The fake workload API servers (which listen on every interface) take ports from a range
	// below the kernel's ephemeral ports, picked at random so two test binaries rarely meet; the
	// last port of the range is the in-memory backend's debug server.
	base := 10000 + 1000*rand.IntN(22)
	args := []string{"--kubeconfig", kubeconfig, "--webhook-port", strconv.Itoa(hooks.LocalServingPort),
		"--webhook-cert-dir", hooks.LocalServingCertDir, "--health-addr", health, "--inventory-addr", inventory,
		"--inventory-token-file", c.InventoryTokenFile,
		"--workload-min-port", strconv.Itoa(base), "--workload-max-port", strconv.Itoa(base + 998),
		"--workload-debug-port", strconv.Itoa(base + 999)}
	c.LogFile = filepath.Join(c.work, "capi.log")
	if c.cmd, c.exited, err = startProcess(bin, args, c.LogFile); err != nil {
		return hooks, "", err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-c.exited:
			return hooks, "", fmt.Errorf("Cluster API's controllers exited; their log: %s", tail(c.LogFile))
		default:
		}
		if resp, err := HTTP.Get("http://" + health + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return hooks, inventory, nil
			}
		}
		if time.Now().After(deadline) {
			return hooks, "", fmt.Errorf("Cluster API's controllers are not ready after a minute; their log: %s", tail(c.LogFile))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the controllers and the control plane.
func (c *CAPI) Stop() error {
	stopProcess(c.cmd, c.exited)
	stopProcess(c.gc, c.gcExited)
	err := c.Env.Stop()
	if c.work != "" {
		_ = os.RemoveAll(c.work)
	}
	for _, dir := range c.certDirs {
		_ = os.RemoveAll(dir)
	}
	return err
}

// startProcess starts bin in a process group of its own, dying with the test binary (setpriv's
// parent-death signal where there is setpriv), its output in logFile.
func startProcess(bin string, args []string, logFile string) (*exec.Cmd, chan struct{}, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, nil, err
	}
	var cmd *exec.Cmd
	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		cmd = exec.Command(setpriv, append([]string{"--pdeathsig", "KILL", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", filepath.Base(bin), err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = out.Close(); close(exited) }()
	return cmd, exited, nil
}

// stopProcess ends a process startProcess started: SIGTERM to its group, SIGKILL after 10s.
func stopProcess(cmd *exec.Cmd, exited chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// OutOfBand changes an in-memory machine behind Cluster API's back, as someone in the cloud's
// console would: action is stop, start or delete; id is the providerID without its scheme.
func (c *CAPI) OutOfBand(ctx context.Context, id, action string) error {
	return c.testbed(ctx, "/testbed/instances/"+id+"/"+action)
}

// Answer makes the inventory endpoint answer "normal"ly, with no instances ("empty"), with an
// answer that does not say it is complete ("incomplete"), or with an error ("error").
func (c *CAPI) Answer(ctx context.Context, mode string) error {
	return c.testbed(ctx, "/testbed/answer/"+mode)
}

// SnapshotCalls is how many snapshots the inventory endpoint was asked for (first pages).
func (c *CAPI) SnapshotCalls(tb testing.TB) int {
	tb.Helper()
	resp, err := HTTP.Get(c.Inventory + "/testbed/snapshots")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		tb.Fatalf("inventory endpoint: snapshots %q: %v", b, err)
	}
	return n
}

func (c *CAPI) testbed(ctx context.Context, path string) error {
	return post(ctx, c.Inventory+path, http.StatusNoContent)
}

// post sends an empty POST to a test server's control URL and wants status back.
func post(ctx context.Context, url string, status int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// MainCAPI is TestMain for a package that runs against Cluster API's controllers.
func MainCAPI(m *testing.M, use func(*CAPI)) {
	sandbox.RunChildIfAsked()
	began := time.Now()
	c, err := StartCAPI()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	started := time.Since(began)
	use(c)
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "testenv: the last lines of Cluster API's log (%s):\n%s\n", c.LogFile, tail(c.LogFile))
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "testenv: the control plane and Cluster API's controllers started in %s; the controllers' peak RSS %d MiB\n",
			started.Round(100*time.Millisecond), peakRSS(c.cmd)>>20)
	}
	if err := c.Stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// peakRSS is a running process's peak resident set (VmHWM), in bytes; 0 when unknown.
func peakRSS(cmd *exec.Cmd) int64 {
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// capiBinary returns hack/capi's binary: DRIFTD_CAPI when set (the Makefile sets it), else what
// `hack/testbin.sh capi` builds.
func capiBinary() (string, error) {
	if bin := os.Getenv("DRIFTD_CAPI"); bin != "" {
		return bin, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "hack", "testbin.sh"), "capi")
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building Cluster API's controllers with hack/testbin.sh capi: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}

// contractCRDs reads the CRDs and labels each with the Cluster API contract versions it serves
// (cluster.x-k8s.io/v1beta2: v1beta2), which core needs to find an infrastructure provider's
// contract.
func contractCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dirs, err := CRDDirectories()
	if err != nil {
		return nil, err
	}
	dir, err := moduleDir(capiTestModule.Path, capiTestModule.Version)
	if err != nil {
		return nil, err
	}
	for _, d := range capiTestModule.Dirs {
		dirs = append(dirs, filepath.Join(dir, d))
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "*.yaml"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(data, crd); err != nil {
				if err := yaml.Unmarshal(data, crd); err != nil {
					return nil, fmt.Errorf("%s: %w", f, err)
				}
			}
			if crd.Labels == nil {
				crd.Labels = map[string]string{}
			}
			for _, v := range crd.Spec.Versions {
				if v.Served && (v.Name == "v1beta1" || v.Name == "v1beta2") {
					crd.Labels["cluster.x-k8s.io/"+v.Name] = v.Name
				}
			}
			out = append(out, crd)
		}
	}
	return out, nil
}

// loadWebhooks reads the providers' webhook configurations, keeps the entries hack/capi serves,
// and names each configuration after its provider (they share names upstream).
func loadWebhooks(o *envtest.WebhookInstallOptions) error {
	scheme := runtime.NewScheme()
	_ = admissionv1.AddToScheme(scheme)
	for i, wm := range webhookManifests {
		dir, err := moduleDir(wm.module.Path, wm.module.Version)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, wm.path))
		if err != nil {
			return err
		}
		r := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw map[string]any
			if err := r.Decode(&raw); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", wm.path, err)
			}
			if raw == nil {
				continue
			}
			js, _ := yaml.Marshal(raw)
			suffix := "-" + strconv.Itoa(i)
			switch raw["kind"] {
			case "MutatingWebhookConfiguration":
				cfg := &admissionv1.MutatingWebhookConfiguration{}
				if err := yaml.Unmarshal(js, cfg); err != nil {
					return err
				}
				cfg.Name += suffix
				cfg.Webhooks = slices.DeleteFunc(cfg.Webhooks, func(w admissionv1.MutatingWebhook) bool { return !served(w.Rules) })
				o.MutatingWebhooks = append(o.MutatingWebhooks, cfg)
			case "ValidatingWebhookConfiguration":
				cfg := &admissionv1.ValidatingWebhookConfiguration{}
				if err := yaml.Unmarshal(js, cfg); err != nil {
					return err
				}
				cfg.Name += suffix
				cfg.Webhooks = slices.DeleteFunc(cfg.Webhooks, func(w admissionv1.ValidatingWebhook) bool { return !served(w.Rules) })
				o.ValidatingWebhooks = append(o.ValidatingWebhooks, cfg)
			}
		}
	}
	return nil
}

func served(rules []admissionv1.RuleWithOperations) bool {
	for _, r := range rules {
		for _, res := range r.Resources {
			if !slices.Contains(servedResources, res) {
				return false
			}
		}
	}
	return true
}

func freeAddr() string {
	port, err := freePort()
	if err != nil {
		panic(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// tail returns the last 40 lines of a file.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}
