package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// memo is the evaluation of one desired object against one state of its live object: the fields
// that differ, or the API server's permanent verdict on the object (rejected). A transient error
// is never remembered.
type memo struct {
	key      memoKey
	fields   []diff.Field
	rejected error
	// rollout is what applying Git's object does to Machines (for the kinds it applies to).
	rollout *diff.Rollout
	// created is how many objects driftd had created when the verdict was reached: a verdict
	// reached before an object the revision creates existed (a Cluster moved to a ClusterClass of
	// the same commit) is asked again once driftd created more.
	created int64
}

// memoKey is what an evaluation depends on. generation moves with every spec change of objects
// that have one (all Cluster API kinds); resourceVersion stands in for kinds that do not.
// Labels and annotations do not move generation, so they are hashed in.
type memoKey struct {
	desired  uint64
	uid      types.UID
	version  string
	metadata uint64
}

func memoKeyOf(d *desiredObject, live *unstructured.Unstructured) memoKey {
	k := memoKey{desired: d.hash}
	if live == nil {
		return k
	}
	k.uid = live.GetUID()
	k.version = versionOf(live.GetGeneration(), live.GetResourceVersion())
	// The metadata is read in place, not copied: this runs for every object of the fleet.
	meta, _ := live.Object["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	k.metadata = hashPairs(hashPairs(fnvOffset64, labels), annotations)
	return k
}

// memoKeyOfMeta is memoKeyOf of a live object the cache holds as metadata.
func memoKeyOfMeta(d *desiredObject, live *metav1.ObjectMeta) memoKey {
	return memoKey{desired: d.hash, uid: live.UID, version: versionOf(live.Generation, live.ResourceVersion),
		metadata: hashPairs(hashPairs(fnvOffset64, live.Labels), live.Annotations)}
}

func versionOf(generation int64, resourceVersion string) string {
	if generation > 0 {
		return "g" + strconv.FormatInt(generation, 10)
	}
	return "rv" + resourceVersion
}

// hashPairs goes on with FNV-1a hash h over the pairs of m as "key=value\x00" in key order, closed
// by a 1 byte; a value that is not a string counts as "". Nothing is formatted or copied.
func hashPairs[V any](h uint64, m map[string]V) uint64 {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, _ := any(m[k]).(string)
		h = fnvString(fnvString(fnvString(fnvString(h, k), "="), v), "\x00")
	}
	return fnvByte(h, 1)
}

// FNV-1a, 64 bits (hash/fnv's New64a, without its allocations).
const (
	fnvOffset64 uint64 = 14695981039346656037
	fnvPrime64  uint64 = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

func fnvByte(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime64 }

// evaluation is one object compared: its finding (nil: no drift), the live object (nil: none, or,
// with no finding, judged from the cache's metadata without building it), the situation the
// decision was made in and the memo it used.
type evaluation struct {
	finding *diff.Finding
	live    *unstructured.Unstructured
	sit     diff.Situation
	memo    memo
	// stuck are the Clusters whose unfinished rollouts hold this change (see pacer).
	stuck []string
}

// outcome is what reconciling one object came to.
type outcome struct {
	// finding is the drift found (nil: none).
	finding *diff.Finding
	// corrected: driftd corrected it.
	corrected bool
	// err is a transient failure: the object is retried with backoff.
	err error
	// verdict is the API server's permanent refusal of the object as Git has it (or of driftd
	// reading its kind): not retried until Git or the live object changes.
	verdict error
	// after asks for another look after this long (a held correction, a cluster being deleted).
	after time.Duration
	// unusable: the API server refuses the object as Git has it and it does not exist, so what is
	// live of it cannot be known: the render counts as partial (no orphan is looked for).
	unusable bool
}

// Reconcile re-checks one object of the current snapshot and corrects it as a cycle would: the
// daemon's workqueue calls it after a watch event or a transient failure. A returned error is
// retried with backoff; a permanent verdict is remembered until Git or the live object changes.
func (e *Engine) Reconcile(ctx context.Context, key diff.Key) (reconcile.Result, error) {
	s := e.snap.Load()
	if s == nil {
		return reconcile.Result{}, nil
	}
	out := e.reconcileKey(ctx, s, key, true)
	if _, ok := s.desired[key]; ok && out.err == nil {
		e.ledger.Publish()
	}
	var kindErr *KindError
	if errors.As(out.err, &kindErr) {
		e.reportKind(kindErr)
		// Not retried: the next cycle checks the permission again.
		return reconcile.Result{}, reconcile.TerminalError(out.err)
	}
	if out.verdict != nil {
		return reconcile.Result{}, reconcile.TerminalError(out.verdict)
	}
	return reconcile.Result{RequeueAfter: out.after}, out.err
}

// reconcileKey evaluates one object of s and, when act is set, announces and corrects its drift.
func (e *Engine) reconcileKey(ctx context.Context, s *snapshot, key diff.Key, act bool) outcome {
	unlock := e.keys.lock(key)
	defer unlock()
	if e.settledLocked(ctx, s, key, true) {
		return outcome{}
	}
	d, ok := s.desired[key]
	ctx, cancel := context.WithTimeout(ctx, e.opts.ReconcileTimeout)
	defer cancel()
	if !ok {
		return e.reconcileTopology(ctx, s, key, act)
	}
	ev, err := e.evaluate(ctx, s, key, d, act)
	if err != nil {
		return outcome{err: err}
	}
	e.paceCheck(ctx, s, key, d, &ev)
	if ev.finding == nil {
		e.ledger.Clear(specEntry(key))
		return outcome{}
	}
	unusable := ev.memo.rejected != nil && ev.live == nil
	if !act {
		return outcome{finding: ev.finding, unusable: unusable}
	}
	out := e.act(ctx, s, key, d, ev)
	out.unusable = out.unusable || unusable
	return out
}

// evaluate compares one desired object with its live object and decides the action. With act
// set, a missing object about to be created is not dry-run first (createsUnchecked).
func (e *Engine) evaluate(ctx context.Context, s *snapshot, key diff.Key, d *desiredObject, act bool) (evaluation, error) {
	if slicesContains(s.pending, key) {
		// Its CRD is part of the render and not served yet: nothing of its kind can exist.
		return e.decide(ctx, s, key, d, nil, diff.ClassMissing, memo{}, "its CustomResourceDefinition is created first"), nil
	}
	live, err := e.getLive(ctx, d.ref())
	if err != nil {
		return evaluation{}, fmt.Errorf("%s: reading %s: %w", d.file, key, err)
	}
	e.mu.Lock()
	m, ok := e.memo[key]
	e.mu.Unlock()
	if live == nil && ok && m.key.uid != "" && e.opts.LiveFromCache && !CachedByLabel(d.gvk.GroupKind()) {
		// driftd last saw this object, or just wrote it: a cache without it may not have seen
		// that write yet (a cycle creating a fleet races the workqueue, which a Cluster's
		// creation gave its parts). The API says whether it is gone; it is not created twice.
		// (getLive asked the API already for a kind cached by label.)
		if live, err = e.fromAPI(ctx, d.ref()); err != nil {
			return evaluation{}, fmt.Errorf("%s: reading %s: %w", d.file, key, err)
		}
	}
	mk := memoKeyOf(d, live)
	if (!ok || m.key != mk) && e.restoredClean(ctx, key, mk) {
		// An earlier driftd found this very state of the object equal to Git.
		m, ok = memo{key: mk}, true
		e.remember(key, m)
	}
	if live == nil && act && e.createsUnchecked() && (!ok || m.key != mk || (m.rejected != nil && m.created != e.created.Load())) {
		// The creation itself is the check: the API server validates it as it would the dry run,
		// and a refusal is remembered as the dry run's would be (act).
		return e.decide(ctx, s, key, d, nil, diff.ClassMissing, memo{key: mk, created: e.created.Load()}, ""), nil
	}
	if !ok || m.key != mk || (m.rejected != nil && m.created != e.created.Load()) {
		if live, err = e.whole(ctx, live); err != nil {
			return evaluation{}, fmt.Errorf("%s: reading %s: %w", d.file, key, err)
		}
		mk = memoKeyOf(d, live)
		m = memo{key: mk, created: e.created.Load()}
		desired := d.object()
		ignored := e.opts.Rules.IgnoredPaths(desired, live)
		masked := e.opts.Rules.MaskedPaths(desired)
		stored, err := apply.DryRun(ctx, e.deps.Client, e.toApply(d, live))
		err = e.scrub(d, live, err)
		switch {
		case err == nil && live != nil:
			m.fields = diff.Compare(stored, live, ignored, masked)
			if len(m.fields) > 0 && len(live.GetManagedFields()) == 0 && e.opts.LiveFromCache {
				// The cache keeps no managedFields (they would double its memory); only a drifted
				// object needs them, to say who set each value: read it once from the API.
				if fresh, err := e.fromAPI(ctx, d.ref()); err == nil && fresh != nil {
					m.fields = diff.Compare(stored, fresh, ignored, masked)
				}
			}
			if len(m.fields) > 0 {
				m.rollout = e.rollout(ctx, s, key, live, stored)
			}
		case err == nil:
			m.rollout = e.rollout(ctx, s, key, nil, stored)
		case apply.Rejected(err):
			m.rejected = err
			if live != nil {
				m.fields = diff.CompareSet(desired, live, ignored, masked)
			}
		case live == nil && apply.NamespaceMissing(err) && s.namespaces[d.namespace]:
			// Its namespace is part of the render and not created yet: it is missing, and created
			// after its namespace. Not remembered: the namespace is there next time.
			return e.decide(ctx, s, key, d, nil, diff.ClassMissing, memo{}, "its Namespace "+d.namespace+" is created first"), nil
		default:
			return evaluation{}, fmt.Errorf("%s: %s: dry run: %w", d.file, key, err)
		}
		e.remember(key, m)
	}
	class := diff.ClassModified
	if live == nil {
		class = diff.ClassMissing
	} else if len(m.fields) == 0 && m.rejected == nil {
		return evaluation{live: live, memo: m}, nil
	}
	return e.decide(ctx, s, key, d, live, class, m, ""), nil
}

// remember makes m the memo of key, counting the change (see Engine.memoGen).
func (e *Engine) remember(key diff.Key, m memo) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.memo[key] = m
	e.memoGen++
}

// settled says whether key is an object of s the cache's metadata shows as it was found equal to
// Git, and clears its report entry if so: the quiet cycle's path, which costs no request and needs
// no deadline.
// It never waits for a kind's watch to sync (a worker does): a kind slow to list holds back no
// other.
func (e *Engine) settled(ctx context.Context, s *snapshot, key diff.Key) bool {
	unlock := e.keys.lock(key)
	defer unlock()
	return e.settledLocked(ctx, s, key, false)
}

// settledLocked is settled with key's lock held; wait says whether it may wait for the kind's
// watch to sync.
func (e *Engine) settledLocked(ctx context.Context, s *snapshot, key diff.Key, wait bool) bool {
	d, ok := s.desired[key]
	if !ok || slicesContains(s.pending, key) || !e.cleanInCache(ctx, key, d, wait) {
		return false
	}
	e.ledger.Clear(specEntry(key))
	return true
}

// cleanInCache is the quiet cycle's path for a kind cached as metadata: the memo has the state
// the cache holds of the object as equal to Git. It reads the cache's metadata in place and builds
// no object; anything else (not cached, a memo to restore, drift) takes evaluate's whole path.
func (e *Engine) cleanInCache(ctx context.Context, key diff.Key, d *desiredObject, wait bool) bool {
	if !e.thin(d.gvk) {
		return false
	}
	if e.deps.Kinds != nil && !e.deps.Kinds.Serving(d.gvk) && (!wait || e.deps.Kinds.Ready(ctx, d.gvk) != nil) {
		return false
	}
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(d.gvk)
	if err := e.deps.Reader.Get(ctx, client.ObjectKey{Namespace: d.namespace, Name: d.name}, live); err != nil {
		return false
	}
	e.mu.Lock()
	m, ok := e.memo[key]
	e.mu.Unlock()
	return ok && m.key == memoKeyOfMeta(d, &live.ObjectMeta) && len(m.fields) == 0 && m.rejected == nil
}

// createsUnchecked says whether a missing object is created without a dry run before: when driftd
// corrects and predicts no rollout (the prediction reads the dry run's object). A fleet created from
// empty costs one request per object so, not two.
func (e *Engine) createsUnchecked() bool {
	return e.opts.Policy.Mode == diff.ModeCorrect && !e.opts.Rollouts
}

// decide builds the evaluation of an object that drifts (m is its memo, empty when it was not
// dry-run; pending says what is created before it). diff.Decide makes the decision.
func (e *Engine) decide(ctx context.Context, s *snapshot, key diff.Key, d *desiredObject, live *unstructured.Unstructured, class diff.Class, m memo, pending string) evaluation {
	sit := e.situation(ctx, s, key, live)
	sit.Pending = pending
	if m.rejected != nil {
		sit.Rejected = rejection(key, m.rejected)
	}
	desired := d.object()
	f := &diff.Finding{Layer: diff.LayerSpec, Class: class, Cluster: sit.Cluster, Object: diff.RefOf(desired), File: d.file, Fields: m.fields, Rollout: m.rollout}
	f.Decided(diff.Decide(class, desired, live, sit, e.opts.Policy))
	return evaluation{finding: f, live: live, sit: sit, memo: m}
}

// rejection says the API server's verdict on an object in words, with a hint when driftd knows one.
func rejection(key diff.Key, err error) string {
	if hint := apply.Hint(key.Kind, err); hint != "" {
		return "the API server rejects it (hint: " + hint + "): " + report.Brief(err.Error())
	}
	return "the API server rejects it: " + report.Brief(err.Error())
}

// redecide decides again about ev's finding once the situation changed (a hold, a verdict).
func (e *Engine) redecide(d *desiredObject, ev evaluation) {
	ev.finding.Decided(diff.Decide(ev.finding.Class, d.object(), ev.live, ev.sit, e.opts.Policy))
}

// situation is what the decision about key depends on beyond the object: its cluster's live
// state, and the source's.
func (e *Engine) situation(ctx context.Context, s *snapshot, key diff.Key, live *unstructured.Unstructured) diff.Situation {
	sit := diff.Situation{Cluster: s.clusters[key], Degraded: s.degraded}
	if live != nil && live.GetDeletionTimestamp() != nil {
		sit.Deleting = true
	}
	if sit.Cluster == "" {
		return sit
	}
	ck := diff.Key{Group: "cluster.x-k8s.io", Kind: "Cluster", Namespace: key.Namespace, Name: sit.Cluster}
	if d, ok := s.desired[ck]; ok {
		sit.Paused = d.paused
		if lc, err := e.getLive(ctx, d.ref()); err == nil && lc != nil {
			sit.Paused = sit.Paused || diff.IsPaused(lc)
			sit.Deleting = sit.Deleting || lc.GetDeletionTimestamp() != nil
		}
	}
	return sit
}

// act announces a finding and makes the correction it calls for.
func (e *Engine) act(ctx context.Context, s *snapshot, key diff.Key, d *desiredObject, ev evaluation) outcome {
	now := e.opts.Now()
	f, live := ev.finding, ev.live
	entry := specEntry(key)
	var target runtime.Object
	if live != nil {
		target = live
	} else {
		target = d.object()
	}
	if f.Action.Corrects() && f.Class == diff.ClassModified && setByOthers(f.Fields) {
		e.mu.Lock()
		c := e.contests[key]
		if c == nil {
			c = &diff.Contest{}
			e.contests[key] = c
		}
		hold, until, reason := c.Observe(e.opts.Contest, now, managers(f.Fields))
		episode := c.Episode
		e.mu.Unlock()
		if hold {
			// Held: one Warning for the whole episode, however often the field flips meanwhile.
			ev.sit.Held = reason
			e.redecide(d, ev)
			e.ledger.Held(target, entry, *f, episode)
			return outcome{finding: f, after: until.Sub(now)}
		}
	}
	announced := e.ledger.Drift(target, entry, *f)
	m := ev.memo
	switch {
	case f.Blocker == diff.BlockerRejected:
		e.ledger.Failed(target, entry, *f, m.rejected, apply.Hint(key.Kind, m.rejected))
		return outcome{finding: f, verdict: fmt.Errorf("%s: %s: %w", d.file, key, m.rejected)}
	case f.Action == diff.ActionBlocked:
		if announced {
			e.ledger.Blocked(target, *f)
		}
		return outcome{finding: f}
	case f.Action == diff.ActionHeld:
		// The Event goes on the waiting Cluster, where a person looks for its rollout.
		cluster := target
		ck := diff.Key{Group: diff.GVKCluster.Group, Kind: "Cluster", Namespace: key.Namespace, Name: ev.sit.Cluster}
		if cd, ok := s.desired[ck]; ok {
			if lc, err := e.getLive(ctx, cd.ref()); err == nil && lc != nil {
				cluster = lc
			}
		}
		e.ledger.RolloutHeld(cluster, entry, *f, ev.stuck)
		return outcome{finding: f, after: paceRecheck}
	case f.Action == diff.ActionReport && ev.sit.Deleting:
		if ev.sit.Cluster != "" {
			e.mu.Lock()
			e.awaiting[key.Namespace+"/"+ev.sit.Cluster] = true
			e.mu.Unlock()
		}
		return outcome{finding: f, after: 15 * time.Second} // look again once the deletion moved on
	case !f.Action.Corrects():
		return outcome{finding: f}
	}

	live, err := e.whole(ctx, live)
	if err != nil {
		return outcome{finding: f, err: fmt.Errorf("%s: reading %s: %w", d.file, key, err)}
	}
	var r apply.Result
	if live == nil {
		r = e.app.Create(ctx, e.toApply(d, nil))
	} else {
		r = e.app.Apply(ctx, e.toApply(d, live))
	}
	r.Err = e.scrub(d, live, r.Err)
	if r.Err != nil {
		if e.pace != nil && f.Rollout.Replaces() > 0 {
			e.pace.abandon(key.Namespace+"/"+ev.sit.Cluster, key)
		}
		if live == nil && apply.NamespaceMissing(r.Err) && s.namespaces[d.namespace] {
			// Created without a dry run (createsUnchecked) before its Namespace of the render:
			// created after it, as the dry run would have said.
			ev.sit.Pending = "its Namespace " + d.namespace + " is created first"
			e.redecide(d, ev)
			return outcome{finding: f}
		}
		if apply.Rejected(r.Err) {
			// The write was refused: after a dry run that passed (a webhook that does not dry-run)
			// or in its place (createsUnchecked). A verdict, remembered like one.
			m := ev.memo
			m.rejected = r.Err
			e.remember(key, m)
			ev.sit.Rejected = rejection(key, r.Err)
			e.redecide(d, ev)
		}
		if e.ledger.Failed(target, entry, *f, r.Err, apply.Hint(key.Kind, r.Err)) {
			e.logOf(ctx, key).Error(r.Err, "Correction failed", "class", f.Class)
		}
		if apply.Rejected(r.Err) {
			// An object the API server refuses to create is unusable, as a dry run would find it.
			return outcome{finding: f, verdict: fmt.Errorf("%s: %s: %w", d.file, key, r.Err), unusable: live == nil}
		}
		return outcome{finding: f, err: r.Err}
	}
	if f.Class == diff.ClassMissing {
		e.created.Add(1)
	}
	if f.Class == diff.ClassModified && setByOthers(f.Fields) {
		e.mu.Lock()
		if c := e.contests[key]; c != nil {
			c.Corrected(now)
		} else {
			c = &diff.Contest{}
			c.Corrected(now)
			e.contests[key] = c
		}
		e.mu.Unlock()
	}
	// The Event is recorded on the object as it is now: its new resourceVersion keeps it apart
	// from earlier corrections, which the Event recorder would otherwise fold into one series
	// that keeps the first note.
	fresh := r.Object // a created object as stored
	if live != nil {
		fresh, err = e.fromAPI(ctx, d.ref())
	}
	if err == nil && fresh != nil {
		target = fresh
		// What driftd just applied equals Git (a dry run now would say so): remembered, so the
		// watch event of this very write costs no request.
		e.remember(key, memo{key: memoKeyOf(d, fresh)})
	}
	e.ledger.Corrected(target, entry, *f)
	e.logOf(ctx, key).Info("Drift corrected", "class", f.Class, "action", f.Action)
	if f.Class == diff.ClassMissing && key.Kind == "Cluster" && key.Group == "cluster.x-k8s.io" {
		// A Cluster created anew after a deletion finished: the parts that waited for it are
		// looked at now. A Cluster created for the first time has none waiting: the cycle that
		// created it goes on to its parts (handing them to the workqueue too had both check
		// them, a hundred thousand requeues for a fleet of 10,000 created from empty).
		ck := key.Namespace + "/" + key.Name
		e.mu.Lock()
		waited := e.awaiting[ck]
		delete(e.awaiting, ck)
		e.mu.Unlock()
		if waited {
			for _, part := range s.parts[ck] {
				e.requeueKey(part)
			}
		}
	}
	return outcome{finding: f, corrected: true}
}

// logOf is the logger of object key: the workqueue's (its LogConstructor names the object), or,
// in a cycle's own call, the engine's with the object named — made only when there is something to
// log, not for each of the fleet's objects every cycle.
func (e *Engine) logOf(ctx context.Context, key diff.Key) logr.Logger {
	if log, err := logr.FromContext(ctx); err == nil {
		return log
	}
	return e.deps.Log.WithValues("object", key.String())
}

// scrub hides in err every secret value the desired or live object holds (the API server quotes a
// value it rejects); errors.As still finds the API status underneath.
func (e *Engine) scrub(d *desiredObject, live *unstructured.Unstructured, err error) error {
	if err == nil {
		return nil
	}
	desired := d.object()
	masked := e.opts.Rules.MaskedPaths(desired)
	secrets := append(diff.SecretValues(desired, masked), diff.SecretValues(live, masked)...)
	msg := err.Error()
	clean := diff.Scrub(msg, secrets)
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// setByOthers reports whether some differing field's live value was set by another field manager
// than driftd: drift someone made, rather than a change in Git.
func setByOthers(fields []diff.Field) bool {
	for _, f := range fields {
		if f.Manager != "" && f.Manager != apply.FieldManager {
			return true
		}
	}
	return false
}

func managers(fields []diff.Field) []string {
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		out = append(out, f.Manager)
	}
	return out
}

// specEntry is the Ledger's entry of a rendered object.
func specEntry(key diff.Key) report.Entry { return report.Entry{Set: report.SetSpec, Key: key} }

func (e *Engine) requeueKey(key diff.Key) {
	if r := e.requeue.Load(); r != nil {
		(*r)(key)
	}
}

// toApply is the desired object with ignored fields set to their live values, as it is dry-run
// and applied.
func (e *Engine) toApply(d *desiredObject, live *unstructured.Unstructured) *unstructured.Unstructured {
	obj := d.object()
	if live != nil {
		diff.KeepLive(obj, live, e.opts.Rules.IgnoredPaths(obj, live))
	}
	return obj
}

// getLive reads the live object of obj, or nil when it does not exist. Objects read from the
// cache are shared with it and must not be changed.
func (e *Engine) getLive(ctx context.Context, obj client.Object) (*unstructured.Unstructured, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if e.deps.Kinds != nil {
		if err := e.deps.Kinds.Ready(ctx, gvk); err != nil {
			return nil, err
		}
	}
	if e.thin(gvk) {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(gvk)
		err := e.deps.Reader.Get(ctx, client.ObjectKeyFromObject(obj), m)
		if apierrors.IsNotFound(err) {
			return e.missingFromCache(ctx, obj)
		}
		if err != nil {
			return nil, err
		}
		return thinObject(gvk, &m.ObjectMeta), nil
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(gvk)
	err := e.deps.Reader.Get(ctx, client.ObjectKeyFromObject(obj), live)
	if apierrors.IsNotFound(err) && e.opts.LiveFromCache {
		return e.missingFromCache(ctx, obj)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return live, nil
}

// rollout says what applying next (the dry run of Git's object) over live (nil: it is created)
// does to Machines, for the kinds Cluster API makes Machines from; nil for the others. What Cluster
// API judges with is read from the API: a MachineDeployment's Machines' ages (metadata only, for
// its rollout.after); a KubeadmControlPlane's Cluster, Machines and their bootstrap and
// infrastructure objects.
func (e *Engine) rollout(ctx context.Context, s *snapshot, key diff.Key, live, next *unstructured.Unstructured) *diff.Rollout {
	if !e.opts.Rollouts {
		return nil
	}
	switch next.GroupVersionKind().GroupKind() {
	case diff.GVKMachineDeployment.GroupKind():
		var machines []time.Time
		if live != nil && diff.NeedsMachineAges(live, next, e.opts.Now()) {
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(diff.GVKMachine.GroupVersion().WithKind("MachineList"))
			err := e.deps.Client.List(ctx, list, client.InNamespace(live.GetNamespace()),
				client.MatchingLabels{clusterv1.MachineDeploymentNameLabel: live.GetName()})
			if err == nil {
				machines = make([]time.Time, 0, len(list.Items))
				for _, m := range list.Items {
					if m.DeletionTimestamp == nil { // one on its way out is not replaced again
						machines = append(machines, m.CreationTimestamp.Time)
					}
				}
			}
		}
		r, err := diff.MachineDeploymentRollout(live, next, machines, e.opts.Now())
		if err != nil {
			return &diff.Rollout{Effect: diff.EffectUnknown, Reason: err.Error()}
		}
		return r
	case gkCluster:
		return e.clusterRollout(ctx, s, live, next)
	case gkClusterClass:
		if live == nil {
			return nil // a new class: no Cluster uses it yet
		}
		return e.classRollout(ctx, s, live, next)
	case gkKubeadmControlPlane:
		unknown := func(err error) *diff.Rollout {
			return &diff.Rollout{Effect: diff.EffectUnknown, ControlPlane: true, Reason: err.Error()}
		}
		var cur, des *controlplanev1.KubeadmControlPlane
		des = &controlplanev1.KubeadmControlPlane{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(next.Object, des); err != nil {
			return unknown(err)
		}
		var cp diff.ControlPlane
		if live != nil {
			cur = &controlplanev1.KubeadmControlPlane{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, cur); err != nil {
				return unknown(err)
			}
			var err error
			if cp, err = e.controlPlane(ctx, s, s.clusters[key], live); err != nil {
				return unknown(err)
			}
		}
		return diff.ControlPlaneRollout(ctx, cur, des, cp, e.opts.Now())
	}
	return nil
}

// classRollout says what next, a ClusterClass, does to the Machines of the Clusters that use it
// (read from the API): its changed template references, with the old templates' spec (live) and
// the new ones' (Git's first), and the Machines of each MachineDeployment topology and control
// plane of those Clusters.
func (e *Engine) classRollout(ctx context.Context, s *snapshot, live, next *unstructured.Unstructured) *diff.Rollout {
	changes := e.templateChanges(ctx, s, live, next)
	if len(changes) == 0 {
		return nil
	}
	clusters := &unstructured.UnstructuredList{}
	clusters.SetGroupVersionKind(diff.GVKCluster.GroupVersion().WithKind("ClusterList"))
	if err := e.deps.Client.List(ctx, clusters); err != nil {
		return &diff.Rollout{Effect: diff.EffectUnknown, Reason: "listing the Clusters that use the class: " + err.Error()}
	}
	var users []diff.ClassUser
	for i := range clusters.Items {
		c := &clusters.Items[i]
		if classOf(c) != live.GetNamespace()+"/"+live.GetName() {
			continue
		}
		u, err := e.classUsers(ctx, c)
		if err != nil {
			return &diff.Rollout{Effect: diff.EffectUnknown, Reason: err.Error()}
		}
		users = append(users, u...)
	}
	patches, _, _ := unstructured.NestedSlice(next.Object, "spec", "patches")
	return diff.ClassRollout(changes, users, len(patches) > 0)
}

// clusterRollout says what next, a Cluster, does over live to the Machines of its topology: its
// live control plane and MachineDeployment topologies, and for a moved classRef the two classes'
// templates (the old one live, the new one as the revision has it).
func (e *Engine) clusterRollout(ctx context.Context, s *snapshot, live, next *unstructured.Unstructured) *diff.Rollout {
	if _, ok, _ := unstructured.NestedMap(next.Object, "spec", "topology"); !ok {
		return nil
	}
	var users []diff.ClassUser
	var changes []diff.TemplateChange
	patched := false
	if live != nil {
		var err error
		if users, err = e.classUsers(ctx, live); err != nil {
			return &diff.Rollout{Effect: diff.EffectUnknown, Reason: err.Error()}
		}
		if from, to := classOf(live), classOf(next); from != to {
			read := func(r client.Reader, ref string) (*unstructured.Unstructured, error) {
				ns, name, _ := strings.Cut(ref, "/")
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(diff.GVKClusterClass)
				if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
					return nil, fmt.Errorf("reading ClusterClass %s: %w", ref, err)
				}
				return u, nil
			}
			old, err := read(e.deps.Client, from)
			if err != nil {
				return &diff.Rollout{Effect: diff.EffectUnknown, Reason: err.Error()}
			}
			nw, err := read(revisionReader{Client: e.deps.Client, desired: s.desired}, to)
			if err != nil {
				return &diff.Rollout{Effect: diff.EffectUnknown, Reason: err.Error()}
			}
			changes = e.templateChanges(ctx, s, old, nw)
			p, _, _ := unstructured.NestedSlice(nw.Object, "spec", "patches")
			patched = len(p) > 0
		}
	}
	return diff.ClusterRollout(live, next, users, changes, patched)
}

// templateChanges are the template references next changes from live (two ClusterClasses, or
// one in two versions), with the old templates' spec (live) and the new ones' (Git's first).
func (e *Engine) templateChanges(ctx context.Context, s *snapshot, live, next *unstructured.Unstructured) []diff.TemplateChange {
	changes := diff.ClassTemplateChanges(live, next)
	rr := revisionReader{Client: e.deps.Client, desired: s.desired}
	read := func(r client.Reader, ns string, ref map[string]any) any {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(fmt.Sprint(ref["apiVersion"]))
		u.SetKind(fmt.Sprint(ref["kind"]))
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprint(ref["name"])}, u); err != nil {
			return nil
		}
		return u.Object["spec"]
	}
	for i := range changes {
		c := &changes[i]
		c.OldSpec, c.NewSpec = read(e.deps.Client, live.GetNamespace(), c.OldRef), read(rr, next.GetNamespace(), c.NewRef)
		c.Missing = c.OldSpec == nil || c.NewSpec == nil
	}
	return changes
}

// classOf is the ClusterClass a Cluster's topology uses, as namespace/name ("" without one).
func classOf(c *unstructured.Unstructured) string {
	name, _, _ := unstructured.NestedString(c.Object, "spec", "topology", "classRef", "name")
	if name == "" {
		return ""
	}
	ns, _, _ := unstructured.NestedString(c.Object, "spec", "topology", "classRef", "namespace")
	if ns == "" {
		ns = c.GetNamespace()
	}
	return ns + "/" + name
}

// classUsers are a topology Cluster's live control plane and MachineDeployment topologies, with
// their Machines.
func (e *Engine) classUsers(ctx context.Context, c *unstructured.Unstructured) ([]diff.ClassUser, error) {
	var users []diff.ClassUser
	key := c.GetNamespace() + "/" + c.GetName()
	if ref, ok, _ := unstructured.NestedString(c.Object, "spec", "controlPlaneRef", "name"); ok {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(controlplanev1.GroupVersion.WithKind("KubeadmControlPlane"))
		u.SetNamespace(c.GetNamespace())
		u.SetName(ref)
		if cp, err := e.fromAPI(ctx, u); err == nil && cp != nil {
			users = append(users, diff.ClassUser{Cluster: key, Machines: replicasOf(cp)})
		}
	}
	workers, _, _ := unstructured.NestedSlice(c.Object, "spec", "topology", "workers", "machineDeployments")
	for _, w := range workers {
		m, _ := w.(map[string]any)
		mds := &unstructured.UnstructuredList{}
		mds.SetGroupVersionKind(diff.GVKMachineDeployment.GroupVersion().WithKind("MachineDeploymentList"))
		if err := e.deps.Client.List(ctx, mds, client.InNamespace(c.GetNamespace()), client.MatchingLabels{
			clusterv1.ClusterNameLabel: c.GetName(), clusterv1.ClusterTopologyMachineDeploymentNameLabel: fmt.Sprint(m["name"])}); err != nil {
			return nil, fmt.Errorf("listing the MachineDeployments of Cluster %s: %w", key, err)
		}
		n := 0
		for i := range mds.Items {
			n += replicasOf(&mds.Items[i])
		}
		users = append(users, diff.ClassUser{Cluster: key, Worker: fmt.Sprint(m["name"]), Class: fmt.Sprint(m["class"]), Machines: n})
	}
	return users, nil
}

// replicasOf is how many Machines of a MachineDeployment or control plane a rollout replaces: those
// it has and is meant to have (the fewer of status.replicas and spec.replicas; either alone when
// only one is set).
func replicasOf(u *unstructured.Unstructured) int {
	spec, hasSpec, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	status, hasStatus, _ := unstructured.NestedInt64(u.Object, "status", "replicas")
	switch {
	case hasSpec && hasStatus:
		// At the end of an earlier rollout status.replicas still counts the Machines on their way
		// out; they are not replaced again (as diff.MachineDeploymentRollout counts).
		return int(min(spec, status))
	case hasStatus:
		return int(status)
	}
	return int(spec)
}

// gkKubeadmControlPlane is the kind whose control-plane Machines rollout judges.
var (
	gkKubeadmControlPlane = controlplanev1.GroupVersion.WithKind("KubeadmControlPlane").GroupKind()
	gkClusterClass        = clusterv1.GroupVersion.WithKind("ClusterClass").GroupKind()
	gkCluster             = clusterv1.GroupVersion.WithKind("Cluster").GroupKind()
)

// controlPlane gathers what Cluster API's KubeadmControlPlane controller judges live's Machines
// with, read from the API: the Cluster (cluster), the control plane's Machines, their
// KubeadmConfigs and infrastructure machines; and a reader of the revision for the templates.
func (e *Engine) controlPlane(ctx context.Context, s *snapshot, cluster string, live *unstructured.Unstructured) (diff.ControlPlane, error) {
	ns := live.GetNamespace()
	cp := diff.ControlPlane{KubeadmConfigs: map[string]*bootstrapv1.KubeadmConfig{}, InfraMachines: map[string]*unstructured.Unstructured{},
		Templates: revisionReader{Client: e.deps.Client, desired: s.desired}}
	c := &unstructured.Unstructured{}
	c.SetGroupVersionKind(diff.GVKCluster)
	if err := e.deps.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cluster}, c); err != nil {
		return cp, fmt.Errorf("reading Cluster %s: %w", cluster, err)
	}
	cp.Cluster = &clusterv1.Cluster{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(c.Object, cp.Cluster); err != nil {
		return cp, err
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(diff.GVKMachine.GroupVersion().WithKind("MachineList"))
	if err := e.deps.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{
		clusterv1.ClusterNameLabel: cluster, clusterv1.MachineControlPlaneNameLabel: live.GetName()}); err != nil {
		return cp, fmt.Errorf("listing the control plane's Machines: %w", err)
	}
	for i := range list.Items {
		m := &clusterv1.Machine{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, m); err != nil {
			return cp, err
		}
		cp.Machines = append(cp.Machines, m)
		if ref := m.Spec.Bootstrap.ConfigRef; ref.IsDefined() && ref.Kind == "KubeadmConfig" {
			u, err := e.readRef(ctx, ns, ref.APIGroup, ref.Kind, ref.Name)
			if err != nil {
				return cp, err
			}
			if u != nil {
				kc := &bootstrapv1.KubeadmConfig{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, kc); err != nil {
					return cp, err
				}
				cp.KubeadmConfigs[m.Name] = kc
			}
		}
		if ref := m.Spec.InfrastructureRef; ref.IsDefined() {
			u, err := e.readRef(ctx, ns, ref.APIGroup, ref.Kind, ref.Name)
			if err != nil {
				return cp, err
			}
			if u != nil {
				cp.InfraMachines[m.Name] = u
			}
		}
	}
	return cp, nil
}

// readRef reads the object a Cluster API reference names (group and kind, the version the API
// server prefers), or nil when it does not exist.
func (e *Engine) readRef(ctx context.Context, ns, group, kind, name string) (*unstructured.Unstructured, error) {
	mapping, err := e.deps.Mapper.RESTMapping(schema.GroupKind{Group: group, Kind: kind})
	if err != nil {
		return nil, fmt.Errorf("%s.%s: %w", kind, group, err)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mapping.GroupVersionKind)
	u.SetNamespace(ns)
	u.SetName(name)
	return e.fromAPI(ctx, u)
}

// revisionReader reads objects as the revision under evaluation will have them: Git's rendered
// objects first, the live ones otherwise. It writes nothing.
type revisionReader struct {
	client.Client
	desired map[diff.Key]*desiredObject
}

func (r revisionReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		gvk := u.GroupVersionKind()
		if d, ok := r.desired[diff.Key{Group: gvk.Group, Kind: gvk.Kind, Namespace: key.Namespace, Name: key.Name}]; ok {
			u.Object = d.object().Object
			return nil
		}
	}
	return r.Client.Get(ctx, key, obj, opts...)
}

// missingFromCache is getLive's answer for an object the cache does not hold. The cache holds
// every object of a kind but those CachedByLabel names (cached by driftd's owner label only): for
// those the API is asked before anything is called missing. Creating a fleet costs no read per
// object so; an object someone else created in the instant before its watch event arrived is
// applied over as if missing — the correction a Modified finding would make a moment later.
func (e *Engine) missingFromCache(ctx context.Context, obj client.Object) (*unstructured.Unstructured, error) {
	if CachedByLabel(obj.GetObjectKind().GroupVersionKind().GroupKind()) {
		return e.fromAPI(ctx, obj)
	}
	return nil, nil
}

// CachedByLabel says whether the daemon caches the objects of gk only when they carry driftd's
// owner label: Secrets and ConfigMaps, which a management cluster holds many of (kubeconfigs,
// certificates, bootstrap data), few of them driftd's.
func CachedByLabel(gk schema.GroupKind) bool {
	return gk.Group == "" && (gk.Kind == "Secret" || gk.Kind == "ConfigMap")
}

// thin says whether getLive returns only the metadata of gvk's objects: the daemon caches no more
// of the kinds diff.MetadataOnly names.
func (e *Engine) thin(gvk schema.GroupVersionKind) bool {
	return e.opts.LiveFromCache && diff.MetadataOnly(gvk, e.opts.Cloud)
}

// thinObject is the live object getLive returns for a kind cached as metadata: its type and
// metadata, no content. whole reads the rest.
func thinObject(gvk schema.GroupVersionKind, m *metav1.ObjectMeta) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(m.Namespace)
	u.SetName(m.Name)
	u.SetUID(m.UID)
	u.SetResourceVersion(m.ResourceVersion)
	u.SetGeneration(m.Generation)
	u.SetCreationTimestamp(m.CreationTimestamp)
	u.SetDeletionTimestamp(m.DeletionTimestamp)
	u.SetLabels(m.Labels)
	u.SetAnnotations(m.Annotations)
	u.SetOwnerReferences(m.OwnerReferences)
	u.SetFinalizers(m.Finalizers)
	return u
}

// whole returns live (read by getLive) with its content: for a kind cached as metadata, read from
// the API (nil when it is gone since). Only what changed, or is corrected, is read so.
func (e *Engine) whole(ctx context.Context, live *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if live == nil || !e.thin(live.GroupVersionKind()) {
		return live, nil
	}
	return e.fromAPI(ctx, live)
}

// fromAPI reads obj's live object from the API server rather than the cache, or nil.
func (e *Engine) fromAPI(ctx context.Context, obj client.Object) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
	if err := e.deps.Client.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return live, nil
}

func slicesContains(keys []diff.Key, k diff.Key) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}
