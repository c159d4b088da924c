package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/engine"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/sandbox"
	"github.com/driftd/driftd/internal/source"
)

type runOptions struct {
	commonOptions
	interval         time.Duration
	cloudInterval    time.Duration
	metricsAddr      string
	profiling        bool
	probeAddr        string
	leaderElect      bool
	leaderElectionNS string
	// lease timing: how long a lease lasts, how long the leader tries to renew it, how often.
	leaseDuration, renewDeadline, retryPeriod time.Duration
	namespace                                 string
	once                                      bool
	development                               bool
}

func newRunCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Keep the fleet equal to its Git repository: report and correct drift continuously",
		Long: `run compares the fleet repository with the management cluster every --interval and whenever
a watched object changes, announces drift as Kubernetes Events and, in correct mode, puts it right
with server-side apply. It serves metrics and health probes and elects a leader when asked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(cmd); err != nil {
				return err
			}
			if o.interval <= 0 {
				return fmt.Errorf("--interval must be positive, got %s", o.interval)
			}
			if o.cloudInterval <= 0 {
				return fmt.Errorf("--cloud-interval must be positive, got %s", o.cloudInterval)
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.bind(fs)
	fs.DurationVar(&o.interval, "interval", 5*time.Minute, "time between full cycles (watched objects are re-checked as soon as they change)")
	fs.DurationVar(&o.cloudInterval, "cloud-interval", 2*time.Minute, "time between comparisons with the cloud inventory (with --provider)")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 turns it off")
	fs.BoolVar(&o.profiling, "profiling", false, "serve Go's runtime profiles (/debug/pprof/: heap, CPU, goroutines) on the metrics endpoint")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes; 0 turns them off")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader so that only one replica corrects drift")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: --namespace)")
	// Longer than controller-runtime's 15 s / 10 s / 2 s, as Flux's controllers default to: an API
	// server busy with a large fleet can take more than 10 s to answer a lease renewal, and a
	// leader that gives up exits.
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 35*time.Second, "how long a standby waits before it takes over a lease that was not renewed")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 30*time.Second, "how long the leader tries to renew its lease before it gives up (and exits); less than the lease duration")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 5*time.Second, "time between attempts to renew or take the lease; less than the renew deadline")
	fs.StringVar(&o.namespace, "namespace", podNamespace(), "driftd's namespace: its status ConfigMap driftd-status-<owner> and its Events, its lease, memo, inventory and last verified commit")
	fs.BoolVar(&o.once, "once", false, "run one full cycle against the API, print its findings and exit (with --provider in correct mode it takes the daemon's lease, or refuses while a daemon holds it)")
	fs.BoolVar(&o.development, "log-development", false, "human-readable logs instead of JSON")
	return cmd
}

func (o *runOptions) run(ctx context.Context, out, errOut io.Writer) error {
	// Errors are reported, not crashes: no stack traces below panics.
	logger := zap.New(zap.UseDevMode(o.development), zap.WriteTo(errOut), zap.StacktraceLevel(zapcore.DPanicLevel))
	log.SetLogger(logger)
	klog.SetLogger(logger) // client-go's leader election and informers log through klog
	if o.leaderElect && !(o.retryPeriod > 0 && o.retryPeriod < o.renewDeadline && o.renewDeadline < o.leaseDuration) {
		return fmt.Errorf("--leader-election-retry-period (%s) < --leader-election-renew-deadline (%s) < --leader-election-lease-duration (%s) must hold",
			o.retryPeriod, o.renewDeadline, o.leaseDuration)
	}
	p, err := o.parts()
	if err != nil {
		return err
	}
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		share := daemonMemoryLimit(limit, o.source.render.MaxMemory)
		debug.SetMemoryLimit(share)
		logger.Info("Memory limit", "GOMEMLIMIT", limit, "daemon", share, "render", o.source.render.MaxMemory)
	}
	if o.once {
		return o.runOnce(ctx, p, out, logger)
	}
	leNS := o.leaseNamespace()
	ownerSel := labels.SelectorFromSet(labels.Set{diff.OwnerLabel: p.opts.Owner})
	ownerOnly := cache.ByObject{Label: ownerSel}
	mgr, err := manager.New(p.cfg, manager.Options{
		Scheme: p.scheme,
		// driftd serves the metrics itself (serveMetrics): its own and controller-runtime's.
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "driftd-" + p.opts.Owner,
		LeaderElectionNamespace:       leNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		GracefulShutdownTimeout:       ptr(30 * time.Second),
		Cache: cache.Options{
			// driftd only reads what it caches, and asks the API for managedFields when it found
			// drift: no copies on read, no managedFields held, and of a Machine only what is read.
			DefaultUnsafeDisableDeepCopy: ptr(true),
			DefaultTransform:             engine.CacheTransform(),
			ByObject: map[client.Object]cache.ByObject{
				// A management cluster holds many Secrets (kubeconfigs, certificates, bootstrap data)
				// and ConfigMaps; cache only driftd's own (engine.CachedByLabel). Others are read with a
				// GET when Git names them.
				&corev1.Secret{}:    ownerOnly,
				&corev1.ConfigMap{}: ownerOnly,
			}},
	})
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	if o.metricsAddr != "0" {
		if err := mgr.Add(serveMetrics(o.metricsAddr, registry, o.profiling)); err != nil {
			return err
		}
	}
	status := report.NewStatus(p.client, o.namespace, p.opts.Owner)
	recorder := report.NewAsyncRecorder(p.client, p.scheme, 1024)
	if err := mgr.Add(recorder); err != nil {
		return err
	}
	p.opts.LiveFromCache, p.opts.Cloud = true, len(o.cloud.providers) > 0
	watches := engine.NewWatches(mgr.GetCache(), p.client, mgr.GetRESTMapper())
	watches.Cloud = p.opts.Cloud
	ledger := report.NewLedger(report.NewEvents(recorder), report.NewMetrics(registry, p.opts.Owner), status)
	e := engine.New(p.opts, engine.Deps{
		Source: p.src, Render: o.source.renderer(), Renders: o.source.renderCache(),
		Reader: mgr.GetCache(), Client: p.client, Mapper: mgr.GetRESTMapper(), Kinds: watches,
		Ledger:    ledger,
		Status:    status,
		Memo:      engine.NewMemoStore(p.client, o.namespace, p.opts.Owner),
		Verified:  o.source.verifiedStore(p.client, o.namespace, p.opts.Owner),
		Inventory: engine.NewInventoryStore(p.client, o.namespace, p.opts.Owner),
		Log:       logger.WithName("engine"),
	})
	loopOpts := engine.LoopOptions{Interval: o.interval}
	if len(o.cloud.providers) > 0 {
		loopOpts.CloudInterval, loopOpts.Cloud = o.cloudInterval, p.cloudReconciler(e, ledger, logger.WithName("cloud"))
	}
	loop, err := engine.NewLoop(mgr, e, watches, loopOpts, logger.WithName("loop"))
	if err != nil {
		return err
	}
	if o.leaderElect {
		if err := mgr.Add(standby(mgr.Elected(), e, o.leaseDuration, o.interval, logger.WithName("standby"))); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready while cycles complete: a leader that completed none for three intervals is not.
	if err := mgr.AddReadyzCheck("cycles", loop.Ready); err != nil {
		return err
	}
	checkSandbox(ctx, o.source.renderer(), logger)
	logger.Info("Starting driftd", "repo", source.RedactURL(o.source.URL), "ref", o.source.Ref, "path", o.source.path, "mode", p.opts.Policy.Mode)
	return mgr.Start(ctx)
}

func ptr[T any](v T) *T { return &v }

// daemonMemoryLimit is the Go runtime's soft memory limit of the daemon when GOMEMLIMIT is limit
// (the Deployment sets it to the container's memory limit): what the render's process, which shares
// the container, may hold (render) is left to it, and the daemon keeps at least half.
func daemonMemoryLimit(limit, render int64) int64 {
	return max(limit-render, limit/2)
}

// checkSandbox starts one render child that tries to reach a listener of this process and to start
// a program, and logs what the sandbox refused, so an operator sees at start whether it holds where
// driftd runs (seccomp may be off in an unusual runtime; the refusing HTTP transport still holds).
func checkSandbox(ctx context.Context, r sandbox.Renderer, logger logr.Logger) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logger.Error(err, "Cannot check the render sandbox")
		return
	}
	defer func() { _ = ln.Close() }()
	res, err := r.Probe(ctx, "http://"+ln.Addr().String()+"/")
	switch {
	case err != nil:
		logger.Error(err, "Cannot check the render sandbox")
	case res.Holds() && res.Seccomp == "on":
		logger.Info("Render sandbox holds", "network", "refused", "programs", "refused", "seccomp", res.Seccomp)
	default:
		logger.Error(errors.New("the render sandbox lets something through"), "Render sandbox check",
			"http", res.HTTP, "dial", res.Dial, "exec", res.Exec, "seccomp", res.Seccomp)
	}
}

// standby keeps, on a replica that is not leading, the render of the head ready for a takeover
// (engine.Prepare): a standby that takes over then starts from the clone and render on its own
// cache volume instead of cloning and rendering the fleet first. It begins once a lease duration
// passed without an election (a replica starting alone is elected within it and renders in its
// first cycle, not here), then follows the branch every interval; an election stops it, and
// abandons a render under way for the cycle to run in the foreground.
func standby(elected <-chan struct{}, e *engine.Engine, wait, interval time.Duration, log logr.Logger) everyReplica {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-elected:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			if err := e.Prepare(ctx); err != nil && ctx.Err() == nil {
				log.Info("Cannot keep the render of the head for a takeover; the takeover renders it", "error", err.Error())
			}
			wait = interval
		}
	}
}

// leaseNamespace is where the leader election lease lives.
func (o *runOptions) leaseNamespace() string {
	if o.leaderElectionNS != "" {
		return o.leaderElectionNS
	}
	return o.namespace
}

// everyReplica is a function the manager runs on every replica, leader or not.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// serveMetrics serves /metrics on addr on every replica: driftd's metrics from its own registry
// (one per daemon, so that daemons in one process keep their counts apart) and controller-runtime's
// and client-go's from the global one; with profiling, Go's runtime profiles under /debug/pprof/.
func serveMetrics(addr string, own *prometheus.Registry, profiling bool) everyReplica {
	return func(ctx context.Context) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics endpoint: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{ctrlmetrics.Registry, own}, promhttp.HandlerOpts{}))
		if profiling {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		}()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// runOnce runs a single cycle against the API directly (no cache, no leader election) and prints
// its findings as `plan` does. Its Events are written before it returns.
func (o *runOptions) runOnce(ctx context.Context, p *parts, out io.Writer, logger logr.Logger) error {
	if len(o.cloud.providers) > 0 && p.opts.Policy.Mode == diff.ModeCorrect {
		// It may replace Machines: it takes the daemon's lease, so that the two never keep two
		// replacement budgets.
		release, err := holdLease(ctx, p.cfg, p.client, o.leaseNamespace(), "driftd-"+p.opts.Owner)
		if err != nil {
			return err
		}
		defer release()
	}
	status := report.NewStatus(p.client, o.namespace, p.opts.Owner)
	ledger := report.NewLedger(report.NewEvents(report.NewSyncRecorder(p.client, p.scheme)), nil, status)
	e := engine.New(p.opts, engine.Deps{
		Source: p.src, Render: o.source.renderer(), Reader: p.client, Client: p.client, Mapper: p.client.RESTMapper(),
		Ledger:    ledger,
		Status:    status,
		Verified:  o.source.verifiedStore(p.client, o.namespace, p.opts.Owner),
		Inventory: engine.NewInventoryStore(p.client, o.namespace, p.opts.Owner),
		Log:       logger.WithName("engine"),
	})
	res, err := e.Cycle(ctx)
	if err != nil {
		return err
	}
	recon := p.cloudReconciler(e, ledger, logger.WithName("cloud"))
	if res, err = withCloud(res, func() (*report.Result, error) { return recon.Cycle(ctx) }, o.cloud.providers); err != nil {
		return err
	}
	if err := writeTable(out, res); err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return errors.Join(res.Errors...)
	}
	return nil
}
