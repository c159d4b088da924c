package cloud

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/report"
)

// Inventory is what the reconciler needs of a cloud provider: the instances and node pools of the
// clusters in scope, and whether the answer is complete. infra/aws, infra/vsphere and
// infra/endpoint satisfy it.
type Inventory interface {
	// Provider is infra.ProviderAWS, infra.ProviderVSphere or an inventory endpoint's name (the
	// scheme of its providerIDs).
	Provider() string
	// Snapshot reads the inventory of clusters. An error or an incomplete snapshot means nothing
	// may be concluded from what is absent.
	Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error)
}

// PoolRestorer is an inventory that can restore a node pool's sizes, with the cluster's identity.
type PoolRestorer interface {
	RestorePool(ctx context.Context, cluster infra.Cluster, name string, desired *int32, minSize, maxSize int32) error
}

// Fleet is what the reconciler needs of the rest of driftd, and all it gets of it.
type Fleet interface {
	// Rendered is the desired state of the last good render, or nil before the first.
	Rendered() *Rendered
	// Live reads obj's live object through driftd's cache (nil when it does not exist).
	Live(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error)
	// List lists the objects of a kind in a namespace (with the labels given) through driftd's
	// cache, once the kind is readable.
	List(ctx context.Context, gvk schema.GroupVersionKind, namespace string, labels map[string]string) ([]*unstructured.Unstructured, error)
}

// Rendered is the desired state of one render, as the cloud reconciler sees it.
type Rendered struct {
	// Revision is "<ref>@sha1:<sha>".
	Revision string
	// Degraded says why corrections are off (the last fetch or render failed), or "".
	Degraded string
	// Clusters are the rendered Clusters this instance handles, in order: their type and name
	// (Objects decodes one whole).
	Clusters []*metav1.PartialObjectMetadata
	// Objects reads the rendered Cluster API objects (of the groups cluster.x-k8s.io and
	// *.cluster.x-k8s.io) this instance handles.
	Objects RenderedObjects

	// templateServers are, by namespace, the vCenter servers (and thumbprints) the namespace's
	// rendered VSphereMachineTemplates name: read once a cycle, not once a cluster.
	templateServers map[string]map[string]string
}

// RenderedObjects reads rendered objects one at a time. The engine keeps its render as JSON (a
// fleet's render is the daemon's largest part) and the reconciler reads a few objects of a
// cluster: each is decoded when asked for.
type RenderedObjects interface {
	// Get returns the rendered object of key, a copy the caller may change, or false.
	Get(key diff.Key) (*unstructured.Unstructured, bool)
	// Keys returns the keys of the rendered objects of kind in namespace, in the order of their
	// String.
	Keys(kind, namespace string) []diff.Key
}

// ObjectMap is RenderedObjects over objects already decoded (tests).
type ObjectMap map[diff.Key]*unstructured.Unstructured

// Get returns a copy of the object of key.
func (m ObjectMap) Get(key diff.Key) (*unstructured.Unstructured, bool) {
	o, ok := m[key]
	if !ok {
		return nil, false
	}
	return o.DeepCopy(), true
}

// Keys returns the keys of kind in namespace, in the order of their String.
func (m ObjectMap) Keys(kind, namespace string) []diff.Key {
	var keys []diff.Key
	for key := range m {
		if key.Kind == kind && key.Namespace == namespace {
			keys = append(keys, key)
		}
	}
	slices.SortFunc(keys, func(a, b diff.Key) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

// Options configure the reconciler.
type Options struct {
	// Inventories are the providers to read.
	Inventories []Inventory
	// InfrastructureKinds map the kind of a Cluster's infrastructure cluster to the inventory
	// endpoint provider that answers for it (DevCluster → in-memory); AWSCluster and VSphereCluster
	// need no entry.
	InfrastructureKinds map[string]string
	// MachineFields say, by inventory endpoint provider, which infrastructure machine fields an
	// instance's type and image are compared with.
	MachineFields map[string]diff.MachineFields
	// Writes lets driftd restore an Auto Scaling group's sizes (UpdateAutoScalingGroup).
	Writes bool
	// Budget is how many Machine replacements may be in flight per MachineDeployment, MachineSet
	// or control plane; 1 when zero.
	Budget int
	// TotalBudget caps the replacements in flight across the fleet; 0 means no cap.
	TotalBudget int
	// Breaker stops replacements in a cluster or pool where too many Machines look missing or
	// stopped at once; nil is diff.DefaultBreaker.
	Breaker *diff.Breaker
	// AWSIdentityNamespace is where the Secrets of AWSClusterStaticIdentities live (CAPA's namespace).
	AWSIdentityNamespace string
	// IdentityNamespace is where the Secrets of VSphereClusterIdentities live (CAPV's namespace).
	IdentityNamespace string
	// Grace is how old an instance no Machine references must be before it is reported; 10
	// minutes when zero.
	Grace time.Duration
	// Policy is the mode (detect mode replaces nothing).
	Policy diff.Policy
	// Timeout is the deadline of one cycle; 10 minutes when zero.
	Timeout time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Deps are the parts the reconciler works with.
type Deps struct {
	// Fleet is the rendered state and the reader of live objects. Required.
	Fleet Fleet
	// Client reads what driftd does not cache (identities, their Secrets and namespaces, vSphere
	// deployment zones) and writes the replacements. Required.
	Client client.Client
	// Mapper maps kinds to resources. Required.
	Mapper meta.RESTMapper
	// Ledger records the cloud's drift and announces each outcome once; nil announces nothing.
	Ledger *report.Ledger
	// Log logs; the zero logger discards.
	Log logr.Logger
}

// Reconciler compares the fleet's Machines with the cloud. Its methods are safe for concurrent
// use; one cycle runs at a time.
type Reconciler struct {
	opts Options
	deps Deps

	mu sync.Mutex
	// seen is what each location held of each cluster at the last look (diff.Vanished's memory).
	seen map[string]int
}

// New returns a Reconciler.
func New(opts Options, deps Deps) *Reconciler {
	if opts.Grace == 0 {
		opts.Grace = 10 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if deps.Ledger == nil {
		deps.Ledger = report.NewLedger(nil, nil, nil)
	}
	return &Reconciler{opts: opts, deps: deps, seen: map[string]int{}}
}

// ErrNoRevision means no revision was ever rendered: there is nothing to compare with.
var ErrNoRevision = errors.New("no good revision of the fleet yet")

// Cycle compares the Machines and MachinePools of the rendered clusters with the cloud and
// replaces drifted Machines as the policy allows. A provider that cannot answer completely is
// reported (InventoryUnavailable) and none of its machines is judged or touched.
func (r *Reconciler) Cycle(ctx context.Context) (*report.Result, error) {
	return r.run(ctx, true)
}

// Plan is Cycle without corrections, announcements or memory.
func (r *Reconciler) Plan(ctx context.Context) (*report.Result, error) {
	return r.run(ctx, false)
}

func (r *Reconciler) run(parent context.Context, act bool) (*report.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rendered := r.deps.Fleet.Rendered()
	if rendered == nil {
		return nil, ErrNoRevision
	}
	ctx, cancel := context.WithTimeout(parent, r.opts.Timeout)
	defer cancel()
	res := &report.Result{Revision: rendered.Revision}
	sc := r.scope(ctx, rendered, res)
	plan := r.plan(sc, rendered, act)
	res.Findings = plan.Findings
	if act {
		r.act(ctx, sc, plan, res)
		r.deps.Ledger.Publish()
	}
	res.Complete = ctx.Err() == nil
	return res, nil
}

// plan makes every decision of the cycle, from the scope alone.
func (r *Reconciler) plan(sc *scope, rendered *Rendered, act bool) diff.ReplacePlan {
	rin := diff.ReplaceInput{Machines: sc.machines, MHCs: sc.mhcs, Groups: sc.groups, Paused: sc.paused,
		Budget: r.opts.Budget, TotalBudget: r.opts.TotalBudget, Breaker: r.opts.Breaker, Policy: r.opts.Policy,
		Degraded: rendered.Degraded, Restorable: map[string]bool{}, Writes: r.opts.Writes, Suspect: map[string]string{}}
	for _, inv := range r.opts.Inventories {
		if _, ok := inv.(PoolRestorer); ok {
			rin.Restorable[inv.Provider()] = true
		}
	}
	in := diff.CloudInput{Snapshots: sc.snapshots, Machines: sc.cloudMachines, Pools: sc.pools, Clusters: sc.inScope,
		Now: r.opts.Now(), Grace: r.opts.Grace, MachineFields: r.opts.MachineFields}
	// A whole location that emptied itself since the last look is a wrong answer.
	next := maps.Clone(r.seen)
	for _, provider := range slices.Sorted(maps.Keys(sc.snapshots)) {
		suspect, seen := diff.Vanished(r.seen, sc.looks[provider], sc.snapshots[provider], sc.machines)
		maps.Copy(rin.Suspect, suspect)
		for k, v := range seen {
			next[k] = v
		}
	}
	if act {
		r.seen = next
	}
	return diff.PlanReplacements(diff.CloudFindings(in), rin)
}

// warn logs fleet-level trouble and records it on the status ConfigMap.
func (r *Reconciler) warn(reason string, err error) {
	r.deps.Log.Error(err, "Cloud trouble", "reason", reason)
	r.deps.Ledger.Warn(reason, err.Error())
}

func unavailable(provider, cluster string, err error) error {
	if cluster == "" {
		return fmt.Errorf("%s inventory unavailable; none of its machines is judged this cycle: %w", provider, err)
	}
	return fmt.Errorf("%s inventory of cluster %s unavailable; none of its machines is judged this cycle: %w", provider, cluster, err)
}
