package engine

import (
	"context"
	"hash/fnv"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/source"
)

// Fetcher is what the engine needs of a source.
type Fetcher interface {
	Fetch(ctx context.Context) (*source.Checkout, error)
}

var _ Fetcher = (*source.Source)(nil)

// Options configure an Engine. Every field is optional except where noted.
type Options struct {
	// Path is the folder of the repository to render ("" for the root).
	Path string
	// Policy is the mode and pruning.
	Policy diff.Policy
	// Rules are the ignore rules.
	Rules *diff.Rules
	// Owner is the value of diff.OwnerLabel on the objects this driftd applies; "driftd" if empty.
	// Two driftd instances on one cluster need different owners.
	Owner string
	// Shard selects, by their labels in Git, the Clusters this instance handles, so that several
	// driftd instances (each with its own Owner) split a large fleet. Objects of a Cluster it does
	// not select are left out entirely; objects of no cluster (a ClusterClass, a namespace) are
	// handled by every instance. Nil selects every Cluster.
	Shard labels.Selector
	// Cloud configures the cloud layer; its zero value leaves the cloud out.
	Cloud CloudOptions
	// LiveFromCache says Reader is a cache: an object the cache does not hold is confirmed missing
	// with a direct GET through Client before it is reported Missing.
	LiveFromCache bool
}

// Deps are the parts an Engine works with.
type Deps struct {
	// Source fetches the fleet repository. Required.
	Source Fetcher
	// Reader reads live objects. Required.
	Reader client.Reader
	// Client dry-runs and writes. Required.
	Client client.Client
	// Mapper maps kinds to resources. Required.
	Mapper meta.RESTMapper
	// Events announces findings; nil announces nothing.
	Events *report.Events
	// Status keeps the status ConfigMap; nil keeps none.
	Status *report.Status
	// Metrics records metrics; nil records into an unregistered set.
	Metrics *report.Metrics
	// Log logs; the zero logger discards.
	Log logr.Logger
}

// Engine runs cycles. Its methods are safe for concurrent use; they take turns.
type Engine struct {
	opts Options
	deps Deps
	app  *apply.Applier

	mu sync.Mutex
	// The last good render.
	commit, revision string
	desired          map[diff.Key]*desiredObject
	order            []diff.Key
	clusters         diff.Clusters
	partial          bool
	renderErrs       []error
	// degraded is why corrections are off (a source or render failure), or "".
	degraded string
	// memo is the last evaluation of each desired object.
	memo map[diff.Key]memo
	// findings are the current findings by object.
	findings map[diff.Key]diff.Finding
	// gvks are the kinds of every object ever rendered, for orphan search.
	gvks map[schema.GroupVersionKind]bool
	// topologyMDs are the MachineDeployments generated from a rendered Cluster's topology, and the
	// key of that Cluster.
	topologyMDs map[diff.Key]diff.Key
	// replacements are the Machine replacements the last cloud evaluation decided.
	replacements map[diff.Key]diff.Replacement
	// cloudRemaining are the cloud findings the last cloud cycle did not correct.
	cloudRemaining []diff.Finding
}

// desiredObject is one rendered object, ready to dry-run and apply.
type desiredObject struct {
	obj  *unstructured.Unstructured
	file string
	hash uint64
}

// New returns an Engine.
func New(opts Options, deps Deps) *Engine {
	if opts.Owner == "" {
		opts.Owner = "driftd"
	}
	if deps.Events == nil {
		deps.Events = report.NewEvents(nil)
	}
	if deps.Metrics == nil {
		deps.Metrics = report.NewMetrics(nil)
	}
	return &Engine{
		opts: opts, deps: deps, app: apply.New(deps.Client),
		memo: map[diff.Key]memo{}, findings: map[diff.Key]diff.Finding{}, gvks: map[schema.GroupVersionKind]bool{},
		topologyMDs: map[diff.Key]diff.Key{},
	}
}

// Tracks reports whether key is a rendered object, so a watch knows which changes matter.
func (e *Engine) Tracks(key diff.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.desired[key]
	_, generated := e.topologyMDs[key]
	return ok || generated
}

func hashObject(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// GVKs returns the kinds to watch: those of the current render, and MachineDeployments when a
// rendered Cluster has a topology.
func (e *Engine) GVKs() []schema.GroupVersionKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[schema.GroupVersionKind]bool{}
	var out []schema.GroupVersionKind
	if len(e.topologyMDs) > 0 {
		seen[gvkMachineDeployment] = true
		out = append(out, gvkMachineDeployment)
	}
	for _, d := range e.desired {
		gvk := d.obj.GroupVersionKind()
		if !seen[gvk] {
			seen[gvk] = true
			out = append(out, gvk)
		}
	}
	return out
}
