package cli

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/driftd/driftd/internal/cloud"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/engine"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/source"
)

// commonOptions are the option groups `run` and `plan` share.
type commonOptions struct {
	source  sourceOptions
	cluster clusterOptions
	drift   driftOptions
	cloud   cloudOptions
}

func (o *commonOptions) bind(fs *pflag.FlagSet) {
	o.source.bind(fs)
	o.cluster.bind(fs)
	o.drift.bind(fs)
	o.cloud.bind(fs)
}

// complete reads the config file into the flags the command line left unset and validates.
func (o *commonOptions) complete(cmd *cobra.Command) error {
	cfg, err := applyConfigFile(cmd.Flags(), o.drift.configFile)
	if err != nil {
		return err
	}
	if o.drift.rules, err = diff.CompileRules(cfg.ignore, cfg.mask...); err != nil {
		return fmt.Errorf("config file %s: %w", o.drift.configFile, err)
	}
	o.cloud.inventories, o.cloud.configFile = cfg.inventories, o.drift.configFile
	if _, err := o.drift.policy(); err != nil {
		return err
	}
	if err := o.drift.validate(); err != nil {
		return err
	}
	if err := o.cloud.validate(); err != nil {
		return err
	}
	if _, err := labels.Parse(o.drift.shard); err != nil {
		return fmt.Errorf("--shard %q: %w", o.drift.shard, err)
	}
	if err := o.source.validateRender(); err != nil {
		return err
	}
	return o.source.Validate()
}

// parts are the clients and the source an engine is built from.
type parts struct {
	cfg    *rest.Config
	scheme *runtime.Scheme
	client client.Client
	src    *source.Source
	opts   engine.Options
	cloud  cloud.Options
}

// cloudReconciler is the cloud reconciler of e's fleet, announcing through ledger.
func (p *parts) cloudReconciler(e *engine.Engine, ledger *report.Ledger, log logr.Logger) *cloud.Reconciler {
	return cloud.New(p.cloud, cloud.Deps{Fleet: e, Client: p.client, Mapper: p.client.RESTMapper(), Ledger: ledger, Log: log})
}

func (o *commonOptions) parts() (*parts, error) {
	cfg, err := o.cluster.restConfig()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("reaching the management cluster: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mapper, HTTPClient: httpClient})
	if err != nil {
		return nil, err
	}
	src, err := source.New(o.source.Options)
	if err != nil {
		return nil, err
	}
	policy, _ := o.drift.policy()
	var shard labels.Selector
	if o.drift.shard != "" {
		shard, _ = labels.Parse(o.drift.shard)
	}
	return &parts{cfg: cfg, scheme: scheme, client: c, src: src, opts: engine.Options{
		Path: o.source.path, Policy: policy, Rules: o.drift.rules, Owner: o.drift.owner, Shard: shard,
		PruneLimit: &diff.PruneLimit{Max: o.drift.maxPrune, Percent: o.drift.maxPrunePercent}, CycleTimeout: o.drift.cycleTimeout,
		Workers: o.drift.workers,
		// Pacing needs to know which changes replace Machines.
		MaxRollingClusters: o.drift.maxRolling, RolloutTimeout: o.drift.rolloutTimeout, Rollouts: o.drift.maxRolling > 0,
	}, cloud: o.cloud.reconcilerOptions(policy, o.drift.cycleTimeout)}, nil
}

// withCloud runs the cloud comparison after a spec pass when providers are configured, and merges
// its findings and errors into res.
func withCloud(res *report.Result, cloud func() (*report.Result, error), providers []string) (*report.Result, error) {
	if len(providers) == 0 {
		return res, nil
	}
	c, err := cloud()
	if err != nil {
		return nil, err
	}
	return res.Merge(c), nil
}
