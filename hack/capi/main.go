// Command capi runs Cluster API's own controllers and admission webhooks in one process for
// driftd's test bed: the core provider (with ClusterClass topologies), the kubeadm bootstrap and
// control plane providers, and the development infrastructure provider with its in-memory backend
// (DevCluster, DevMachine), which fakes each workload cluster's API server, etcd and Nodes. It
// runs against the test bed's API server, serves every webhook on one port, and serves driftd's
// inventory protocol for the in-memory machines (see inventory.go).
//
// It is its own Go module, so that driftd's go.mod stays lean; hack/testbin.sh builds it once per
// pin and internal/testenv starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.uber.org/zap/zapcore"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	bootstrapv1beta1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta1"
	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1beta1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta1"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1beta1 "sigs.k8s.io/cluster-api/api/core/v1beta1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimev1 "sigs.k8s.io/cluster-api/api/runtime/v1beta2"
	"sigs.k8s.io/cluster-api/bootstrap/kubeadm/reconcilers/kubeadmconfig"
	bootstrapadmission "sigs.k8s.io/cluster-api/bootstrap/kubeadm/webhooks/admission"
	"sigs.k8s.io/cluster-api/controllers/clustercache"
	"sigs.k8s.io/cluster-api/controlplane/kubeadm/pkg/etcd"
	"sigs.k8s.io/cluster-api/controlplane/kubeadm/reconcilers/kubeadmcontrolplane"
	kcpsetup "sigs.k8s.io/cluster-api/controlplane/kubeadm/setup"
	controlplaneadmission "sigs.k8s.io/cluster-api/controlplane/kubeadm/webhooks/admission"
	"sigs.k8s.io/cluster-api/core/reconcilers/cluster"
	"sigs.k8s.io/cluster-api/core/reconcilers/clusterclass"
	"sigs.k8s.io/cluster-api/core/reconcilers/machine"
	"sigs.k8s.io/cluster-api/core/reconcilers/machinedeployment"
	"sigs.k8s.io/cluster-api/core/reconcilers/machinehealthcheck"
	"sigs.k8s.io/cluster-api/core/reconcilers/machineset"
	topologycluster "sigs.k8s.io/cluster-api/core/reconcilers/topology/cluster"
	topologymachinedeployment "sigs.k8s.io/cluster-api/core/reconcilers/topology/machinedeployment"
	topologymachineset "sigs.k8s.io/cluster-api/core/reconcilers/topology/machineset"
	coresetup "sigs.k8s.io/cluster-api/core/setup"
	coreadmission "sigs.k8s.io/cluster-api/core/webhooks/admission"
	"sigs.k8s.io/cluster-api/feature"
	"sigs.k8s.io/cluster-api/test/infrastructure/container"
	infrav1beta1 "sigs.k8s.io/cluster-api/test/infrastructure/docker/api/v1beta1"
	infrav1 "sigs.k8s.io/cluster-api/test/infrastructure/docker/api/v1beta2"
	"sigs.k8s.io/cluster-api/test/infrastructure/docker/controllers"
	infrawebhooks "sigs.k8s.io/cluster-api/test/infrastructure/docker/webhooks"
	cloudv1 "sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/cloud/api/v1alpha1"
	inmemoryruntime "sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/runtime"
	inmemoryserver "sigs.k8s.io/cluster-api/test/infrastructure/inmemory/pkg/server"
	"sigs.k8s.io/cluster-api/util/index"
)

var (
	scheme         = runtime.NewScheme()
	inmemoryScheme = runtime.NewScheme()
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, clusterv1.AddToScheme, clusterv1beta1.AddToScheme,
		bootstrapv1.AddToScheme, bootstrapv1beta1.AddToScheme, controlplanev1.AddToScheme, controlplanev1beta1.AddToScheme,
		infrav1.AddToScheme, infrav1beta1.AddToScheme, runtimev1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	_ = cloudv1.AddToScheme(inmemoryScheme)
	_ = clientgoscheme.AddToScheme(inmemoryScheme)
}

// options are the flags; --kubeconfig is controller-runtime's own.
type options struct {
	webhookPort                    int
	webhookCertDir                 string
	healthAddr                     string
	inventoryAddr                  string
	inventoryTokenFile             string
	muxMinPort, muxMaxPort, muxDbg int
}

func main() {
	var o options
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the webhook server")
	flag.StringVar(&o.webhookCertDir, "webhook-cert-dir", "", "folder with tls.crt and tls.key for the webhook server")
	flag.StringVar(&o.healthAddr, "health-addr", "127.0.0.1:0", "address of /readyz")
	flag.StringVar(&o.inventoryAddr, "inventory-addr", "", "address of the inventory endpoint (driftd's inventory protocol); empty: none")
	flag.StringVar(&o.inventoryTokenFile, "inventory-token-file", "", "bearer token the inventory endpoint requires; empty: none")
	flag.IntVar(&o.muxMinPort, "workload-min-port", 20000, "lowest port of the workload clusters' fake API servers")
	flag.IntVar(&o.muxMaxPort, "workload-max-port", 20999, "highest port of the workload clusters' fake API servers")
	flag.IntVar(&o.muxDbg, "workload-debug-port", 19000, "port of the in-memory backend's debug server")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "capi: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.InfoLevel), zap.StacktraceLevel(zapcore.DPanicLevel)))
	// ClusterClass topologies are behind a feature gate; the webhooks refuse them when it is off.
	if err := feature.MutableGates.Set("ClusterTopology=true"); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200
	cacheOpts := coresetup.ManagerCacheOptions(scheme, "capi-testbed", "", 10*time.Minute)
	// One process serves every provider: keep every Secret's data (core alone drops all but
	// kubeconfigs, which the control plane provider needs).
	for obj, by := range cacheOpts.ByObject {
		by.Transform = nil
		cacheOpts.ByObject[obj] = by
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: o.healthAddr,
		Cache:                  cacheOpts,
		Client:                 coresetup.ManagerClientOptions(),
		Controller:             config.Controller{CacheSyncTimeout: 2 * time.Minute, SkipNameValidation: ptr.To(true)},
		WebhookServer:          webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: o.webhookPort, CertDir: o.webhookCertDir}),
	})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	if err := index.AddDefaultIndexes(ctx, mgr); err != nil {
		return err
	}
	secretCachingClient, err := coresetup.CreateSecretCachingClient(mgr)
	if err != nil {
		return err
	}
	clusterCache, err := clustercache.SetupWithManager(ctx, mgr, clustercache.Options{
		SecretClient: secretCachingClient,
		Cache:        coresetup.ClusterCacheCacheOptions(),
		Client:       coresetup.ClusterCacheClientOptions("capi-testbed", 50, 100),
	}, concurrency(10))
	if err != nil {
		return err
	}
	if err := setupCore(ctx, mgr, clusterCache); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	if err := setupKubeadm(ctx, mgr, clusterCache, secretCachingClient); err != nil {
		return fmt.Errorf("kubeadm: %w", err)
	}
	if err := setupInMemory(ctx, mgr, clusterCache, o); err != nil {
		return fmt.Errorf("in-memory infrastructure: %w", err)
	}
	if o.inventoryAddr != "" {
		if err := mgr.Add(newInventory(mgr.GetClient(), o.inventoryAddr, o.inventoryTokenFile)); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

func concurrency(c int) controller.Options { return controller.Options{MaxConcurrentReconciles: c} }

// setupCore sets up the core provider's controllers and webhooks as core/main.go does, without the
// Runtime SDK, ClusterResourceSets, MachinePools and the CRD migrator, which the test bed does not use.
func setupCore(ctx context.Context, mgr ctrl.Manager, cc clustercache.ClusterCache) error {
	c, api := mgr.GetClient(), mgr.GetAPIReader()
	for _, err := range []error{
		(&clusterclass.Reconciler{Client: c}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&topologycluster.Reconciler{Client: c, APIReader: api, ClusterCache: cc}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&topologymachinedeployment.Reconciler{Client: c, APIReader: api}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&topologymachineset.Reconciler{Client: c, APIReader: api}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&cluster.Reconciler{Client: c, APIReader: api, ClusterCache: cc, RemoteConnectionGracePeriod: 50 * time.Second}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&machine.Reconciler{Client: c, APIReader: api, ClusterCache: cc, RemoteConditionsGracePeriod: 5 * time.Minute}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&machineset.Reconciler{Client: c, APIReader: api, ClusterCache: cc}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&machinedeployment.Reconciler{Client: c, APIReader: api}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&machinehealthcheck.Reconciler{Client: c, ClusterCache: cc}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&coreadmission.ClusterClass{Client: c}).SetupWebhookWithManager(mgr),
		(&coreadmission.Cluster{Client: c, ClusterCacheReader: cc}).SetupWebhookWithManager(mgr),
		(&coreadmission.Machine{}).SetupWebhookWithManager(mgr),
		(&coreadmission.MachineSet{}).SetupWebhookWithManager(mgr),
		(&coreadmission.MachineDeployment{}).SetupWebhookWithManager(mgr),
		(&coreadmission.MachineDrainRule{}).SetupWebhookWithManager(mgr),
		(&coreadmission.MachineHealthCheck{}).SetupWebhookWithManager(mgr),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// setupKubeadm sets up the kubeadm bootstrap and control plane providers.
func setupKubeadm(ctx context.Context, mgr ctrl.Manager, cc clustercache.ClusterCache, secrets client.Client) error {
	etcdLogger, err := logutil.CreateDefaultZapLogger(zapcore.WarnLevel)
	if err != nil {
		return err
	}
	_ = kcpsetup.ManagerClientOptions // the KCP's own client options equal core's
	c, api := mgr.GetClient(), mgr.GetAPIReader()
	for _, err := range []error{
		(&kubeadmconfig.Reconciler{Client: c, SecretCachingClient: secrets, APIReader: api, ClusterCache: cc,
			TokenTTL: kubeadmconfig.DefaultTokenTTL}).SetupWithManager(ctx, mgr, concurrency(10)),
		(&kubeadmcontrolplane.Reconciler{Client: c, APIReader: api, SecretCachingClient: secrets, ClusterCache: cc,
			EtcdDialTimeout: 10 * time.Second, EtcdCallTimeout: etcd.DefaultCallTimeout, EtcdLogger: etcdLogger,
			RemoteConditionsGracePeriod: 5 * time.Minute,
		}).SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 10, ReconciliationTimeout: 3 * time.Minute}),
		(&bootstrapadmission.KubeadmConfig{}).SetupWebhookWithManager(mgr),
		(&bootstrapadmission.KubeadmConfigTemplate{}).SetupWebhookWithManager(mgr),
		(&controlplaneadmission.KubeadmControlPlane{}).SetupWebhookWithManager(mgr),
		(&controlplaneadmission.ScaleValidator{Client: c}).SetupWebhookWithManager(mgr),
		(&controlplaneadmission.KubeadmControlPlaneTemplate{}).SetupWebhookWithManager(mgr),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// setupInMemory sets up the development provider's DevCluster and DevMachine controllers with the
// in-memory backend, whose fake workload API servers listen on the ports given.
func setupInMemory(ctx context.Context, mgr ctrl.Manager, cc clustercache.ClusterCache, o options) error {
	// The docker backend's client is made but never used: no DevCluster here asks for docker.
	runtimeClient, err := container.NewDockerClient()
	if err != nil {
		return err
	}
	inMemory := inmemoryruntime.NewManager(inmemoryScheme)
	if err := inMemory.Start(ctx); err != nil {
		return err
	}
	mux, err := inmemoryserver.NewWorkloadClustersMux(inMemory, "127.0.0.1", inmemoryserver.CustomPorts{
		MinPort: int32(o.muxMinPort), MaxPort: int32(o.muxMaxPort), DebugPort: int32(o.muxDbg)})
	if err != nil {
		return err
	}
	c := mgr.GetClient()
	for _, err := range []error{
		(&controllers.DevMachineReconciler{Client: c, ContainerRuntime: runtimeClient, ClusterCache: cc, InMemoryManager: inMemory, APIServerMux: mux}).
			SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 10, ReconciliationTimeout: 5 * time.Minute}),
		(&controllers.DevClusterReconciler{Client: c, ContainerRuntime: runtimeClient, InMemoryManager: inMemory, APIServerMux: mux}).
			SetupWithManager(ctx, mgr, concurrency(10)),
		(&infrawebhooks.DevMachine{}).SetupWebhookWithManager(mgr),
		(&infrawebhooks.DevMachineTemplate{}).SetupWebhookWithManager(mgr),
		(&infrawebhooks.DevCluster{}).SetupWebhookWithManager(mgr),
		(&infrawebhooks.DevClusterTemplate{}).SetupWebhookWithManager(mgr),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}
