package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/driftd/driftd/internal/egress"
	"github.com/driftd/driftd/internal/sandbox"
)

// Env is a running control plane with the CRDs installed.
type Env struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Client is a controller-runtime client for Config with Scheme.
	Client client.Client
	// Scheme knows the core Kubernetes types, CRDs and Cluster API's v1beta2 types; CAPA and CAPV
	// objects are handled as unstructured.
	Scheme *runtime.Scheme

	env     *envtest.Environment
	assets  string // the folder of the control plane's binaries
	cleanup func()
	// before are stopped before the control plane (processes that hold watches on it).
	before   []func()
	stopOnce sync.Once
	stopErr  error
}

// NewScheme returns the scheme of Env.Scheme.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(clusterv1.AddToScheme(s))
	utilruntime.Must(bootstrapv1.AddToScheme(s))
	utilruntime.Must(controlplanev1.AddToScheme(s))
	return s
}

// Start starts etcd and kube-apiserver, installs the CRDs of CRDModules and waits until they
// are served.
func Start() (*Env, error) {
	crds, err := CRDDirectories()
	if err != nil {
		return nil, err
	}
	return start(envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true})
}

func start(crds envtest.CRDInstallOptions) (*Env, error) {
	dir, err := binaryAssets()
	if err != nil {
		return nil, err
	}
	assets, cleanup, err := guardedAssets(dir)
	if err != nil {
		return nil, err
	}
	scheme := NewScheme()
	env := &envtest.Environment{
		Scheme:                   scheme,
		CRDInstallOptions:        crds,
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	// Named explicitly: envtest would otherwise prefer KUBEBUILDER_ASSETS over the guarded wrappers.
	env.ControlPlane.GetAPIServer().Path = filepath.Join(assets, "kube-apiserver")
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, "etcd")}
	// A folder of the test bed's own for the API server's certificates: envtest keeps it (and the
	// port) across a restart, so clients and proxies made before RestartAPIServer still trust it.
	certs, err := os.MkdirTemp("", "testenv-apiserver-")
	if err != nil {
		cleanup()
		return nil, err
	}
	cleanupAssets := cleanup
	cleanup = func() { cleanupAssets(); _ = os.RemoveAll(certs) }
	env.ControlPlane.GetAPIServer().CertDir = certs
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		cleanup()
		return nil, fmt.Errorf("starting the test bed's control plane from %s: %w", dir, err)
	}
	// Tests create many objects quickly; the default client-side limits only slow them down.
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		cleanup()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env, assets: dir, cleanup: cleanup}, nil
}

// RestartAPIServer restarts the kube-apiserver process as a kubelet restarts a static pod's:
// SIGTERM (it ends its watches and requests), SIGKILL if it has not exited 10 s later, down for
// down, then started again on the same port, certificates and etcd. It returns once the new
// process answers its health check, and whether the old one had to be killed.
func (e *Env) RestartAPIServer(down time.Duration) (killed bool, err error) {
	api := e.env.ControlPlane.GetAPIServer()
	pid, err := apiServerPID(api.SecureServing.Port)
	if err != nil {
		return false, err
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		killed = true
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := api.Stop(); err != nil { // reaps the process
		return killed, fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	time.Sleep(down)
	if err := api.Start(); err != nil {
		return killed, fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return killed, nil
}

// apiServerPID finds the kube-apiserver serving on port.
func apiServerPID(port string) (int, error) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasSuffix(args[0], "kube-apiserver") && slices.Contains(args, "--secure-port="+port) {
			return strconv.Atoi(filepath.Base(filepath.Dir(p)))
		}
	}
	return 0, fmt.Errorf("no kube-apiserver process serves port %s", port)
}

// Stop stops the control plane and removes its data. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		for _, stop := range e.before {
			stop()
		}
		e.stopErr = e.env.Stop()
		e.cleanup()
	})
	return e.stopErr
}

// Main is the TestMain of an integration test package: it starts an Env, hands it to use (which
// usually stores it in a package variable), runs the tests and stops the Env, also when the test
// binary is interrupted.
func Main(m *testing.M, use func(*Env)) {
	// driftd renders in a child process of its own binary: in a test, the test binary.
	sandbox.RunChildIfAsked()
	env, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	// A real cluster fills aggregated ClusterRoles (config/'s driftd role is one).
	if err := env.StartControllers("clusterrole-aggregation-controller"); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		_ = env.Stop()
		os.Exit(1)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "testenv: %v: stopping the control plane\n", sig)
		_ = env.Stop()
		os.Exit(1)
	}()
	use(env)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping the control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// HTTP is the test bed's HTTP client. driftd makes Go's default client refuse every request
// (internal/egress) in the processes it runs in, test binaries included, so tests use this one.
var HTTP = &http.Client{Transport: egress.NewTransport(), Timeout: time.Minute}

// Unavailable fails the test because a server of the test bed could not start, saying what the
// machine must have. A missing server is never a skip: a run that passes has tested everything.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	tb.Fatalf("%s\n%s", fmt.Sprintf(format, args...), needs)
}

// needs is what the machine must have for the test bed (README says so too).
const needs = `the test bed needs, on the machine: Go, git (with git http-backend and git-upload-pack),
setpriv (util-linux), and moto 5's moto_server on PATH (pip install 'moto[server]>=5');
the control plane and Cluster API's controllers are built by the project itself (make testbin)`

// KubeconfigFile writes a kubeconfig for the control plane into a temporary file, for commands
// that take --kubeconfig.
func (e *Env) KubeconfigFile(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := writeKubeconfig(e, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// WriteKubeconfig writes a kubeconfig for the control plane to path.
func (e *Env) WriteKubeconfig(path string) error { return writeKubeconfig(e, path) }

func writeKubeconfig(e *Env, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: e.Config.Host, CertificateAuthorityData: e.Config.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: e.Config.CertData, ClientKeyData: e.Config.KeyData, Token: e.Config.BearerToken}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin"}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}
