package engine

import (
	"context"
	"hash/fnv"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/source"
	"github.com/driftd/driftd/internal/version"
)

// Fetcher is what the engine needs of a source.
type Fetcher interface {
	Fetch(ctx context.Context) (*source.Checkout, error)
}

var _ Fetcher = (*source.Source)(nil)

// Verifier is a Fetcher that, under --verify-signatures, accepts only heads that descend from the
// last verified commit; the engine remembers that commit across restarts (Deps.Verified).
type Verifier interface {
	SetLastVerified(commit string)
	LastVerified() string
}

var _ Verifier = (*source.Source)(nil)

// Options configure an Engine. Every field is optional.
type Options struct {
	// Path is the folder of the repository to render ("" for the root).
	Path string
	// Policy is the mode and pruning.
	Policy diff.Policy
	// Rules are the ignore rules.
	Rules *diff.Rules
	// Owner is the value of diff.OwnerLabel (and the owner in the tracking id) of the objects this
	// driftd applies; "driftd" if empty. Two driftd instances on one cluster need different owners.
	Owner string
	// Shard selects, by their labels in Git, the Clusters this instance handles, so that several
	// driftd instances (each with its own Owner) split a large fleet. Objects of a Cluster it does
	// not select are left out entirely (and never taken for orphans: another shard has them);
	// objects of no cluster (a ClusterClass, a namespace) are handled by every instance. Nil
	// selects every Cluster.
	Shard labels.Selector
	// LiveFromCache says Reader is a cache holding every object of the kinds it is asked for, but
	// those CachedByLabel names (an object of theirs the cache does not hold is confirmed missing
	// with a direct GET through Client) and those diff.MetadataOnly names as metadata only.
	LiveFromCache bool
	// Cloud says the comparison with the cloud reads the fleet (Fleet's Live and List): the kinds it
	// reads are cached whole.
	Cloud bool
	// Rollouts says what each change does to Machines (Finding.Rollout), reading what Cluster API
	// judges with from the API; plan sets it. The daemon leaves it off: those reads would sit in
	// the path from an edit to its correction.
	Rollouts bool
	// MaxRollingClusters paces the changes that replace Machines: at most this many Clusters roll
	// at once, wave by wave (diff.LabelRolloutWave), each wave once the one before it has finished;
	// 0 applies every change at once. It needs Rollouts.
	MaxRollingClusters int
	// RolloutTimeout is how long a Cluster may roll before the Clusters it holds say so
	// (RolloutHeld); 0 never says.
	RolloutTimeout time.Duration
	// PruneLimit holds back a revision's deletions above it (PruneBlocked); nil is
	// diff.DefaultPruneLimit.
	PruneLimit *diff.PruneLimit
	// Contest says when a field another writer keeps setting back is contested.
	Contest diff.ContestPolicy
	// CycleTimeout is the deadline of one full cycle; 10 minutes when zero.
	CycleTimeout time.Duration
	// ReconcileTimeout is the deadline of one object's reconcile; one minute when zero.
	ReconcileTimeout time.Duration
	// Workers is how many objects a cycle evaluates at once; 8 when zero.
	Workers int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Renderer renders a checkout: internal/sandbox's, in a child process with a deadline and a
// memory budget, in the daemon. background says the engine serves corrections from an earlier
// render meanwhile (the render may yield the CPU to them); false, that it waits for this one.
// The objects come as JSON; the engine decodes one at a time.
type Renderer interface {
	Render(ctx context.Context, root, path string, background bool) (*render.Encoded, error)
}

// RenderCache keeps a complete render of a commit for a later process (render.Cache). Load
// returns nil, and an error only to log, when it has none for the commit and folder.
type RenderCache interface {
	Load(commit, path string) (*render.Encoded, error)
	Store(commit, path string, enc *render.Encoded) error
}

// inProcess renders in the engine's own process, with render's default budgets (tests).
type inProcess struct{}

func (inProcess) Render(_ context.Context, root, path string, _ bool) (*render.Encoded, error) {
	res, err := render.Render(root, path, render.Options{})
	enc, eerr := render.Encode(res)
	if eerr != nil {
		return nil, eerr
	}
	return enc, err
}

// Deps are the parts an Engine works with.
type Deps struct {
	// Source fetches the fleet repository. Required.
	Source Fetcher
	// Render renders a checkout; nil renders in the engine's own process (tests only: the daemon
	// and plan render in internal/sandbox's child process).
	Render Renderer
	// Renders keeps the last complete render across restarts (render.Cache); nil renders every
	// commit a process meets.
	Renders RenderCache
	// Reader reads live objects. Required.
	Reader client.Reader
	// Client dry-runs and writes. Required.
	Client client.Client
	// Mapper maps kinds to resources. Required.
	Mapper meta.RESTMapper
	// Kinds says whether Reader can read a kind (the daemon's watches); nil reads every kind.
	Kinds KindGate
	// Ledger records the drift that remains and announces each outcome once (Events and metrics);
	// nil announces nothing (plan). The cloud reconciler shares it.
	Ledger *report.Ledger
	// Status keeps the status ConfigMap; nil keeps none.
	Status *report.Status
	// Memo keeps the clean verdicts across restarts; nil keeps them in memory only.
	Memo *MemoStore
	// Inventory keeps driftd's inventory (what it is responsible for, with UIDs) across restarts;
	// nil keeps it in memory only. Only objects in it can be orphans.
	Inventory *InventoryStore
	// Verified keeps the last verified commit across restarts (with --verify-signatures); nil
	// keeps it in memory only. ReadOnly reads it and never writes it (plan).
	Verified         *VerifiedStore
	VerifiedReadOnly bool
	// Log logs; the zero logger discards.
	Log logr.Logger
}

// KindGate makes a kind readable through the engine's Reader, or says why it cannot be.
type KindGate interface {
	// Ready returns nil once Reader serves gvk (its watch started and synced), a *KindError when
	// driftd may not list or watch it, or another error when it is not ready yet.
	Ready(ctx context.Context, gvk schema.GroupVersionKind) error
	// Serving says, without waiting or asking anything, whether Reader serves gvk already.
	Serving(gvk schema.GroupVersionKind) bool
}

// Engine compares the fleet with the management cluster and corrects it. Fetching and rendering
// publish an immutable snapshot of the desired state; each object is then reconciled on its own
// (live → memo → diff → act), by a cycle or after a watch event, under a lock of its own, so no
// slow fetch, cloud call or object holds back another. Its methods are safe for concurrent use.
type Engine struct {
	opts Options
	deps Deps
	app  *apply.Applier

	// snap is the desired state of the last good render.
	snap atomic.Pointer[snapshot]
	// refreshMu lets one fetch and render run at a time; it guards the fields up to keys.
	refreshMu sync.Mutex
	// verifiedLoaded says the remembered verified commit was handed to the source; verifiedSaved is
	// the one last stored.
	verifiedLoaded bool
	verifiedSaved  string
	// failed is the commit whose render failed last; it is not rendered again.
	failed string
	// prepared is the commit a standby kept the render of last (Prepare).
	prepared string
	// keys serialises the reconciles of one object.
	keys keyLocks
	// requeue hands an object whose reconcile failed transiently to the workqueue (the daemon).
	requeue atomic.Pointer[func(diff.Key)]
	// lookAgain hands an object to the workqueue to be looked at again after a while (a change
	// held for its turn in a paced rollout).
	lookAgain atomic.Pointer[func(diff.Key, time.Duration)]
	// created counts the objects driftd created (see memo.created).
	created atomic.Int64

	// ledger is Deps.Ledger: the drift that remains and what was announced of it.
	ledger *report.Ledger

	// mu guards the fields below; it is never held across a request.
	mu sync.Mutex
	// memo is the last evaluation of each desired object; memoGen counts its changes, and
	// memoSaved and inventoryMark are the snapshot and count the clean verdicts were last stored
	// at and the inventory last computed at: a quiet cycle, which changes nothing of it, goes
	// through neither again (both are as large as the fleet).
	memo          map[diff.Key]memo
	memoGen       uint64
	memoSaved     memoMark
	inventoryMark memoMark
	// contests are the correction histories of objects another writer set back.
	contests map[diff.Key]*diff.Contest
	// awaiting are the clusters ("namespace/name") whose parts wait for their deletion to end:
	// their parts are looked at again as soon as driftd creates the Cluster anew.
	awaiting map[string]bool
	// known is the cluster of every object rendered since driftd started, and gvks their kinds:
	// orphans are looked for among them.
	known map[diff.Key]string
	gvks  map[schema.GroupVersionKind]bool
	// topologyMDs are the MachineDeployments generated from a rendered Cluster's topology, and the
	// key of that Cluster.
	topologyMDs map[diff.Key]diff.Key
	// inventory is driftd's inventory, nil until read from Deps.Inventory; inventoryStored says
	// Deps.Inventory holds it as it is.
	inventory       Owned
	inventoryStored bool
	// pace paces the changes that replace Machines; nil without Options.MaxRollingClusters.
	pace *pacer
}

// New returns an Engine.
func New(opts Options, deps Deps) *Engine {
	if opts.Owner == "" {
		opts.Owner = "driftd"
	}
	if opts.CycleTimeout <= 0 {
		opts.CycleTimeout = 10 * time.Minute
	}
	if opts.ReconcileTimeout <= 0 {
		opts.ReconcileTimeout = time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if deps.Render == nil {
		deps.Render = inProcess{}
	}
	if deps.Ledger == nil {
		deps.Ledger = report.NewLedger(nil, report.NewMetrics(nil, opts.Owner), deps.Status)
	}
	if deps.Status != nil {
		deps.Status.Log = deps.Log
	}
	if deps.Memo != nil {
		deps.Memo.salt = version.Get() + "\x00" + opts.Owner + "\x00" + opts.Rules.Fingerprint()
	}
	return &Engine{
		opts: opts, deps: deps, app: apply.New(deps.Client), ledger: deps.Ledger,
		memo: map[diff.Key]memo{}, contests: map[diff.Key]*diff.Contest{}, awaiting: map[string]bool{}, known: map[diff.Key]string{},
		gvks: map[schema.GroupVersionKind]bool{}, topologyMDs: map[diff.Key]diff.Key{},
		pace: newPacer(opts.MaxRollingClusters, opts.RolloutTimeout),
	}
}

// Tracks reports whether key is a rendered object (or a MachineDeployment generated from a rendered
// topology), so a watch knows which changes matter.
func (e *Engine) Tracks(key diff.Key) bool {
	if s := e.snap.Load(); s != nil {
		if _, ok := s.desired[key]; ok {
			return true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, generated := e.topologyMDs[key]
	return generated
}

// PartsOf returns the rendered objects of the cluster a Cluster key names (the Cluster aside), so
// that a change of the live Cluster (paused, being deleted) re-checks them.
func (e *Engine) PartsOf(cluster diff.Key) []diff.Key {
	s := e.snap.Load()
	if s == nil || cluster.Kind != "Cluster" || cluster.Group != "cluster.x-k8s.io" {
		return nil
	}
	return s.parts[cluster.Namespace+"/"+cluster.Name]
}

// SetRequeue makes the engine hand objects whose reconcile failed transiently in a cycle to
// requeue (the daemon's workqueue, which retries with backoff).
func (e *Engine) SetRequeue(requeue func(diff.Key)) { e.requeue.Store(&requeue) }

// SetLookAgain makes the engine hand objects it wants to look at again after a while (a change
// held for its turn in a paced rollout) to lookAgain (the daemon's workqueue).
func (e *Engine) SetLookAgain(lookAgain func(diff.Key, time.Duration)) { e.lookAgain.Store(&lookAgain) }

func hashObject(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// memoMark is a snapshot and a count of the memo's changes.
type memoMark struct {
	s   *snapshot
	gen uint64
}

// keyLocks serialises work on one object without a lock per object: keys are spread over a fixed
// set of mutexes (two objects may share one, which only costs a little waiting).
type keyLocks struct {
	stripes [64]sync.Mutex
}

func (l *keyLocks) lock(k diff.Key) func() {
	// Hashed as it is, with no string built: a cycle locks every key of the fleet.
	m := &l.stripes[maphash.Comparable(lockSeed, k)%uint64(len(l.stripes))]
	m.Lock()
	return m.Unlock
}

var lockSeed = maphash.MakeSeed()
