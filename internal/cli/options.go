package cli

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/driftd/driftd/internal/cloud"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/engine"
	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/infra/aws"
	"github.com/driftd/driftd/internal/infra/endpoint"
	"github.com/driftd/driftd/internal/infra/vsphere"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/sandbox"
	"github.com/driftd/driftd/internal/source"
)

// The providers are inventories the engine can read.
var (
	_ cloud.Inventory = (*aws.Provider)(nil)
	_ cloud.Inventory = (*vsphere.Provider)(nil)
	_ cloud.Inventory = (*endpoint.Provider)(nil)
)

// sourceOptions say where the fleet repository is and how to render it.
type sourceOptions struct {
	source.Options
	path string
	// render bounds each render; maxBytes and maxMemory are its sizes as given (quantities).
	render              render.Limits
	maxBytes, maxMemory string
}

// verifiedStore remembers the last verified commit in namespace, under --verify-signatures.
func (o *sourceOptions) verifiedStore(c client.Client, namespace, owner string) *engine.VerifiedStore {
	if o.VerifyKeyringFile == "" {
		return nil
	}
	return engine.NewVerifiedStore(c, namespace, owner, source.RedactURL(o.URL)+"@"+o.Ref)
}

// renderer renders in a child process within the render budgets.
func (o *sourceOptions) renderer() sandbox.Renderer {
	return sandbox.Renderer{Limits: o.render}
}

// renderCache keeps the last complete render beside the clone, for a restarted daemon: under a
// key of this very binary (its digest) and the render budgets, besides the commit and folder.
func (o *sourceOptions) renderCache() *render.Cache {
	limits, err := json.Marshal(o.render)
	salt := sync.OnceValues(func() ([]byte, error) {
		if err != nil {
			return nil, err
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		f, err := os.Open(exe)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return nil, fmt.Errorf("reading driftd's executable: %w", err)
		}
		return append(h.Sum(nil), limits...), nil
	})
	go func() { _, _ = salt() }() // ready by the time the first fetch is
	return &render.Cache{File: filepath.Join(source.CacheRoot(o.CacheDir), render.CacheFileName(o.URL, o.Ref, o.path)), Salt: salt}
}

func (o *sourceOptions) validateRender() error {
	for _, q := range []struct {
		flag, value string
		into        *int64
	}{{"--render-max-bytes", o.maxBytes, &o.render.MaxBytes}, {"--render-max-memory", o.maxMemory, &o.render.MaxMemory}} {
		v, err := resource.ParseQuantity(q.value)
		if err != nil || v.Value() <= 0 {
			return fmt.Errorf("%s must be a positive size such as 256Mi, got %q", q.flag, q.value)
		}
		*q.into = v.Value()
	}
	for _, n := range []struct {
		flag  string
		value int
	}{{"--render-max-files", o.render.MaxFiles}, {"--render-max-objects", o.render.MaxObjects}, {"--render-max-alias-nodes", o.render.MaxAliasNodes}} {
		if n.value <= 0 {
			return fmt.Errorf("%s must be positive, got %d", n.flag, n.value)
		}
	}
	if o.render.Timeout <= 0 {
		return fmt.Errorf("--render-timeout must be positive, got %s", o.render.Timeout)
	}
	return nil
}

func (o *sourceOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.URL, "repo", "", "fleet repository: https://, ssh://, user@host:path, file:// or a local path (required)")
	fs.StringVar(&o.Ref, "ref", "", "branch, tag or commit SHA to follow (default: the remote's default branch)")
	fs.StringVar(&o.path, "path", "", "folder of the repository to render with kustomize (default: the root)")
	fs.DurationVar(&o.Timeout, "git-timeout", 2*time.Minute, "time limit of one fetch")
	fs.StringVar(&o.CacheDir, "git-cache-dir", "", "folder for the clone between fetches (default: a folder in the temporary directory)")
	fs.StringVar(&o.Username, "git-username", "", "user name for HTTPS basic auth")
	fs.StringVar(&o.PasswordFile, "git-password-file", "", "file holding the HTTPS password (else $"+source.EnvGitPassword+")")
	fs.StringVar(&o.TokenFile, "git-token-file", "", "file holding an HTTPS access token (else $"+source.EnvGitToken+")")
	fs.StringVar(&o.CAFile, "git-ca-file", "", "PEM bundle of certificate authorities to trust for HTTPS")
	fs.StringVar(&o.SSHKeyFile, "git-ssh-key-file", "", "SSH private key (passphrase in $"+source.EnvSSHKeyPassphrase+")")
	fs.StringVar(&o.KnownHostsFile, "git-known-hosts-file", "", "known_hosts file; required for SSH")
	fs.StringVar(&o.VerifyKeyringFile, "verify-signatures", "", "armored OpenPGP public keys: apply only a head commit signed by one of them (else SourceVerificationFailed, nothing written)")
	fs.BoolVar(&o.AllowHistoryRewrite, "allow-history-rewrite", false, "with --verify-signatures, accept a signed head that does not descend from the last verified commit (an intended rollback or force-push); turn it off again afterwards")
	fs.DurationVar(&o.render.Timeout, "render-timeout", render.DefaultTimeout, "deadline of one render; a render past it is stopped (RenderFailed) and the last good revision stays. A new commit's render, which yields the CPU to the serving daemon, counts the CPU time it had, and stops at 3x the deadline on the clock")
	fs.StringVar(&o.maxMemory, "render-max-memory", "512Mi", "memory the render's process may hold; above it the render is stopped (leave room for it in the pod's limit)")
	fs.StringVar(&o.maxBytes, "render-max-bytes", "256Mi", "bytes of the checkout one render may read (only --path and what its kustomizations reference are read)")
	fs.IntVar(&o.render.MaxFiles, "render-max-files", render.DefaultMaxFiles, "files of the checkout one render may read")
	fs.IntVar(&o.render.MaxObjects, "render-max-objects", render.DefaultMaxObjects, "objects one render may produce")
	fs.IntVar(&o.render.MaxAliasNodes, "render-max-alias-nodes", render.DefaultMaxAliasNodes, "YAML nodes the aliases of one file may add when expanded; a file beyond it is refused")
}

// clusterOptions say how to reach the management cluster.
type clusterOptions struct {
	kubeconfig string
	qps        float32
	burst      int
}

func (o *clusterOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the management cluster (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.Float32Var(&o.qps, "kube-api-qps", 100, "requests a second driftd sends the API server at most, on average (its priority and fairness limits them too)")
	fs.IntVar(&o.burst, "kube-api-burst", 200, "requests driftd sends the API server at once at most, above --kube-api-qps")
}

func (o *clusterOptions) restConfig() (*rest.Config, error) {
	if o.qps <= 0 || o.burst < 1 {
		return nil, fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive, got %g and %d", o.qps, o.burst)
	}
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		cfg, err = ctrlconfig.GetConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("reaching the management cluster: %w", err)
	}
	cfg.UserAgent = "driftd"
	if cfg.Proxy == nil {
		// client-go hands a plain http:// server (kubectl proxy) Go's default transport, which
		// refuses everything in driftd (internal/egress); a proxy setting gives it one of its own.
		cfg.Proxy = http.ProxyFromEnvironment
	}
	// Dry-runs of a large fleet come in bursts; the API server's own priority and fairness limits them.
	cfg.QPS, cfg.Burst = o.qps, o.burst
	return cfg, nil
}

// driftOptions say what driftd may do about drift.
type driftOptions struct {
	workers         int
	shard           string
	mode            string
	prune           bool
	maxPrune        int
	maxPrunePercent int
	owner           string
	configFile      string
	cycleTimeout    time.Duration
	maxRolling      int
	rolloutTimeout  time.Duration
	rules           *diff.Rules
}

func (o *driftOptions) bind(fs *pflag.FlagSet) {
	fs.IntVar(&o.workers, "workers", 8, "objects a full cycle compares and writes at once (each waits on the API server most of its time; the objects the cache shows clean are passed one after another beside them)")
	fs.StringVar(&o.shard, "shard", "", "label selector on the Clusters (as Git labels them) this instance handles; give each shard its own --owner")
	fs.StringVar(&o.mode, "mode", string(diff.ModeCorrect), "correct (report and correct drift) or detect (report only, write nothing)")
	fs.BoolVar(&o.prune, "prune", false, "delete orphaned objects (a Cluster only with driftd.io/prune: enabled; never a Cluster's parts one by one)")
	fs.IntVar(&o.maxPrune, "max-prune", 5, "most deletions one revision may make; more are held back (PruneBlocked) until the limit is raised; -1: no limit")
	fs.IntVar(&o.maxPrunePercent, "max-prune-percent", 10, "largest share (%) of the objects driftd tracks one revision may delete; -1: no limit")
	fs.DurationVar(&o.cycleTimeout, "cycle-timeout", 10*time.Minute, "deadline of one full cycle: its fetch, and then its compare, correct and prune (a render is bounded by --render-timeout alone)")
	fs.IntVar(&o.maxRolling, "max-rolling-clusters", 0, "most Clusters whose Machines a change replaces at once; the next Cluster's change waits until they are up to date and available, wave by wave (label "+diff.LabelRolloutWave+"); 0: no limit")
	fs.DurationVar(&o.rolloutTimeout, "rollout-timeout", 30*time.Minute, "with --max-rolling-clusters, how long a Cluster may roll before the Clusters it holds say so (RolloutHeld Event); they wait all the same")
	fs.StringVar(&o.owner, "owner", "driftd", "value of the driftd.io/owner label on applied objects; distinct per driftd instance")
	fs.StringVar(&o.configFile, "config", "", "YAML file with any of these flags as keys, the ignore rules under the key ignore, mask rules under mask and inventory endpoints under inventories")
}

func (o *driftOptions) policy() (diff.Policy, error) {
	mode, err := diff.ParseMode(o.mode)
	if err != nil {
		return diff.Policy{}, fmt.Errorf("--mode: %w", err)
	}
	return diff.Policy{Mode: mode, Prune: o.prune}, nil
}

func (o *driftOptions) validate() error {
	if o.workers < 1 {
		return fmt.Errorf("--workers must be 1 or more, got %d", o.workers)
	}
	if o.maxPrune < -1 {
		return fmt.Errorf("--max-prune must be -1 (no limit) or more, got %d", o.maxPrune)
	}
	if o.maxPrunePercent < -1 || o.maxPrunePercent > 100 {
		return fmt.Errorf("--max-prune-percent must be -1 (no limit) or 0 to 100, got %d", o.maxPrunePercent)
	}
	if o.maxRolling < 0 {
		return fmt.Errorf("--max-rolling-clusters must be 0 (no limit) or more, got %d", o.maxRolling)
	}
	if o.rolloutTimeout <= 0 {
		return fmt.Errorf("--rollout-timeout must be positive, got %s", o.rolloutTimeout)
	}
	if o.cycleTimeout <= 0 {
		return fmt.Errorf("--cycle-timeout must be positive, got %s", o.cycleTimeout)
	}
	return nil
}

// podNamespace is driftd's namespace when it runs in a cluster.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return string(b)
	}
	return "driftd-system"
}

// cloudOptions say which clouds to compare with and what driftd may do there.
type cloudOptions struct {
	providers            []string
	writes               bool
	budget               int
	totalBudget          int
	unhealthyCount       int
	unhealthyPercent     int
	grace                time.Duration
	identityNamespace    string
	awsIdentityNamespace string
	inventoryMaxBytes    string

	// inventories are the config file's inventory endpoints; endpoints those --provider names.
	inventories []inventoryConfig
	configFile  string
	endpoints   []*endpoint.Provider
	kinds       map[string]string
	fields      map[string]diff.MachineFields
}

func (o *cloudOptions) bind(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.providers, "provider", nil, "cloud inventories to compare Machines with: aws, vsphere, or the provider of an inventory endpoint in the config file (repeat or comma-separate; none: spec drift only)")
	fs.BoolVar(&o.writes, "cloud-writes", false, "restore an Auto Scaling group's desired/min/max when they drift from its MachinePool")
	fs.IntVar(&o.budget, "max-replacements", 1, "Machine replacements in flight at most per MachineDeployment, MachineSet or control plane (until its replicas are available again)")
	fs.IntVar(&o.totalBudget, "max-replacements-total", 10, "Machine replacements in flight at most across the fleet; 0: no cap")
	fs.IntVar(&o.unhealthyCount, "max-unhealthy-machines", 1, "breaker: replace nothing in a cluster or pool where more than this many Machines look missing or stopped at once (and more than --max-unhealthy-percent); -1 turns the breaker off")
	fs.IntVar(&o.unhealthyPercent, "max-unhealthy-percent", 30, "breaker: ... and more than this share of its Machines")
	fs.DurationVar(&o.grace, "unmanaged-grace", 10*time.Minute, "age before an instance no Machine references is reported (provisioning takes a while)")
	fs.StringVar(&o.identityNamespace, "vsphere-identity-namespace", "capv-system", "namespace of the Secrets that VSphereClusterIdentities name (CAPV's namespace)")
	fs.StringVar(&o.awsIdentityNamespace, "aws-identity-namespace", "capa-system", "namespace of the Secrets that AWSClusterStaticIdentities name (CAPA's namespace)")
	fs.StringVar(&o.inventoryMaxBytes, "inventory-max-bytes", "128Mi", "bytes one snapshot of an inventory endpoint may answer, all pages together; a larger answer is incomplete (nothing is concluded from it)")
}

func (o *cloudOptions) validate() error {
	if err := o.buildEndpoints(); err != nil {
		return err
	}
	for _, p := range o.providers {
		if p != infra.ProviderAWS && p != infra.ProviderVSphere && !slices.ContainsFunc(o.endpoints, func(e *endpoint.Provider) bool { return e.Provider() == p }) {
			return fmt.Errorf("--provider %q: use aws, vsphere, or the provider of an inventory endpoint the config file's inventories list", p)
		}
	}
	if o.budget < 1 {
		return fmt.Errorf("--max-replacements must be at least 1, got %d", o.budget)
	}
	if o.totalBudget < 0 {
		return fmt.Errorf("--max-replacements-total must be 0 (no cap) or more, got %d", o.totalBudget)
	}
	if o.unhealthyCount < -1 || o.unhealthyPercent < 0 || o.unhealthyPercent > 100 {
		return fmt.Errorf("--max-unhealthy-machines must be -1 or more and --max-unhealthy-percent 0 to 100, got %d and %d", o.unhealthyCount, o.unhealthyPercent)
	}
	if o.grace < 0 {
		return fmt.Errorf("--unmanaged-grace must not be negative, got %s", o.grace)
	}
	return nil
}

// reconcilerOptions turns the flags into the cloud reconciler's options with the providers they
// name.
func (o *cloudOptions) reconcilerOptions(policy diff.Policy, timeout time.Duration) cloud.Options {
	c := cloud.Options{Policy: policy, Timeout: timeout, Writes: o.writes, Budget: o.budget, TotalBudget: o.totalBudget, Grace: o.grace,
		IdentityNamespace: o.identityNamespace, AWSIdentityNamespace: o.awsIdentityNamespace,
		Breaker: &diff.Breaker{MaxCount: o.unhealthyCount, MaxPercent: o.unhealthyPercent}}
	if c.Grace == 0 {
		c.Grace = time.Nanosecond // 0 on the command line means at once
	}
	for _, p := range o.providers {
		switch p {
		case infra.ProviderAWS:
			c.Inventories = append(c.Inventories, aws.New(aws.Options{}))
		case infra.ProviderVSphere:
			c.Inventories = append(c.Inventories, vsphere.New(vsphere.Options{}))
		default:
			for _, e := range o.endpoints {
				if e.Provider() == p {
					c.Inventories = append(c.Inventories, e)
				}
			}
		}
	}
	if len(o.kinds) > 0 {
		c.InfrastructureKinds, c.MachineFields = map[string]string{}, map[string]diff.MachineFields{}
		for kind, p := range o.kinds {
			if slices.Contains(o.providers, p) {
				c.InfrastructureKinds[kind] = p
			}
		}
		maps.Copy(c.MachineFields, o.fields)
	}
	return c
}

// buildEndpoints checks the config file's inventory endpoints and builds their readers.
func (o *cloudOptions) buildEndpoints() error {
	o.endpoints, o.kinds, o.fields = nil, map[string]string{}, map[string]diff.MachineFields{}
	maxBytes, err := resource.ParseQuantity(o.inventoryMaxBytes)
	if err != nil || maxBytes.Value() <= 0 {
		return fmt.Errorf("--inventory-max-bytes must be a positive size such as 128Mi, got %q", o.inventoryMaxBytes)
	}
	for i, ic := range o.inventories {
		where := fmt.Sprintf("config file %s: inventories[%d] (%s)", o.configFile, i, ic.Provider)
		if slices.ContainsFunc(o.endpoints, func(e *endpoint.Provider) bool { return e.Provider() == ic.Provider }) {
			return fmt.Errorf("%s: provider listed twice", where)
		}
		var timeout time.Duration
		if ic.Timeout != "" {
			var err error
			if timeout, err = time.ParseDuration(ic.Timeout); err != nil || timeout <= 0 {
				return fmt.Errorf("%s: timeout %q is not a positive duration", where, ic.Timeout)
			}
		}
		e, err := endpoint.New(endpoint.Options{Name: ic.Provider, URL: ic.URL, TokenFile: ic.TokenFile, CAFile: ic.CAFile, Timeout: timeout, MaxSnapshotBytes: maxBytes.Value()})
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if len(ic.InfrastructureKinds) == 0 {
			return fmt.Errorf("%s: infrastructureKinds is empty; name the infrastructure cluster kinds it answers for", where)
		}
		for _, kind := range ic.InfrastructureKinds {
			if kind == "AWSCluster" || kind == "VSphereCluster" {
				return fmt.Errorf("%s: %s clusters are read by --provider %s", where, kind, map[string]string{"AWSCluster": "aws", "VSphereCluster": "vsphere"}[kind])
			}
			if other, taken := o.kinds[kind]; taken {
				return fmt.Errorf("%s: kind %s is already answered for by %s", where, kind, other)
			}
			o.kinds[kind] = ic.Provider
		}
		var f diff.MachineFields
		for _, c := range []struct {
			path string
			to   *[]string
		}{{ic.MachineFields.Type, &f.Type}, {ic.MachineFields.Image, &f.Image}} {
			if c.path == "" {
				continue
			}
			parts := strings.Split(strings.TrimPrefix(c.path, "."), ".")
			if slices.Contains(parts, "") {
				return fmt.Errorf("%s: machineFields path %q is not a dotted field path such as spec.flavor", where, c.path)
			}
			*c.to = parts
		}
		o.fields[ic.Provider] = f
		o.endpoints = append(o.endpoints, e)
	}
	return nil
}
