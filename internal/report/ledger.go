package report

import (
	"slices"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/driftd/driftd/internal/diff"
)

// Set says who keeps a finding current: the per-object reconcile of a rendered object, the
// judgement of topology-generated MachineDeployments, the orphan search, or the cloud cycle. Each
// replaces its own findings, and only its own.
type Set string

// The sets of the Ledger.
const (
	SetSpec     Set = "spec"
	SetTopology Set = "topology"
	SetOrphans  Set = "orphans"
	SetCloud    Set = "cloud"
)

// Entry is one finding's place in the Ledger: its set and its object.
type Entry struct {
	Set Set
	Key diff.Key
}

// record is what the Ledger knows of one entry: the drift that remains (nil: none now, but what
// was announced of it is kept until Forget) and what was announced of it.
type record struct {
	finding  *diff.Finding
	detected uint64 // fingerprint of the drift last announced
	failed   uint64 // fingerprint of the failure last announced
	episode  uint64 // contest episode last announced (Held)
	stuck    uint64 // the stuck rollouts last announced as holding it (RolloutHeld)
}

// remember makes f the drift that remains of e and v the value of the announcement slot picks;
// it reports whether v is new there (announce it), under one lock.
func (l *Ledger) remember(e Entry, f diff.Finding, slot func(*record) *uint64, v uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.get(e)
	r.finding = &f
	p := slot(r)
	if *p == v {
		return false
	}
	*p = v
	return true
}

// Ledger is driftd's one record of the drift that remains and of what was announced about it.
// Every outcome goes through it once — drift detected, corrected, failed, held, blocked, a
// replacement requested, a fleet-level warning — and each is one Event and its metric, together:
// no caller pairs them by hand. Announcements are once per occurrence: the same drift is not
// announced again every cycle, a drift that ended and came back is. Its state shrinks with the
// fleet: an entry is dropped when its drift ends, a topic when it is cleared.
type Ledger struct {
	events  *Events
	metrics *Metrics
	status  *Status

	mu      sync.Mutex
	entries map[Entry]*record
	topics  map[string]string // fleet-level warnings announced, by topic: the value last announced
}

// NewLedger returns a Ledger announcing through events (nil: nothing is recorded, as for plan),
// counting in metrics (nil: an unregistered set), with fleet-level warnings on status's
// ConfigMap (nil: none).
func NewLedger(events *Events, metrics *Metrics, status *Status) *Ledger {
	if events == nil {
		events = NewEvents(nil)
	}
	if metrics == nil {
		metrics = NewMetrics(nil, "")
	}
	return &Ledger{events: events, metrics: metrics, status: status, entries: map[Entry]*record{}, topics: map[string]string{}}
}

// Metrics are the Ledger's metrics (the cloud's call counters are kept there too).
func (l *Ledger) Metrics() *Metrics { return l.metrics }

func (l *Ledger) get(e Entry) *record {
	r := l.entries[e]
	if r == nil {
		r = &record{}
		l.entries[e] = r
	}
	return r
}

// Drift makes f the drift that remains of entry and announces it (DriftDetected on obj) unless
// this very drift was already announced; it reports whether this is a new occurrence. An ignored
// finding is kept but never announced.
func (l *Ledger) Drift(obj runtime.Object, e Entry, f diff.Finding) bool {
	fresh := l.remember(e, f, func(r *record) *uint64 { return &r.detected }, fingerprint(f))
	if !fresh || f.Action == diff.ActionIgnored {
		return false
	}
	l.events.detected(obj, f)
	return true
}

// Keep makes f the drift that remains of entry without announcing it (plan, a held drift).
func (l *Ledger) Keep(e Entry, f diff.Finding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(e).finding = &f
}

// Clear says entry no longer drifts: if it drifts again, that is a new occurrence.
func (l *Ledger) Clear(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, e)
}

// Settle drops entry's drift from what remains without forgetting what was announced of it: a
// correction that was asked for (a Machine's replacement) and not yet seen done.
func (l *Ledger) Settle(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.entries[e]; r != nil {
		r.finding = nil
	}
}

// SettleAll settles every entry of set: none of its drift is known now (the search that finds it
// could not run), and none of it ended either.
func (l *Ledger) SettleAll(set Set) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e, r := range l.entries {
		if e.Set == set {
			r.finding = nil
		}
	}
}

// Replace makes the entries of set exactly those of keep: every other entry of set ended.
func (l *Ledger) Replace(set Set, keep map[diff.Key]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := range l.entries {
		if e.Set == set && !keep[e.Key] {
			delete(l.entries, e)
		}
	}
}

// Blocked announces that the correction of a new occurrence is held back (a paused cluster, a
// budget, a limit), with the reason: CorrectionBlocked, counted as blocked.
func (l *Ledger) Blocked(obj runtime.Object, f diff.Finding) {
	l.events.emit(obj, "Warning", ReasonCorrectionBlocked, "Correct", f.Reason)
	l.metrics.Corrections.WithLabelValues("blocked").Inc()
}

// Held announces, once per contest episode, that a correction is held because another writer
// keeps setting the field back: CorrectionBlocked naming both writers, counted as blocked.
func (l *Ledger) Held(obj runtime.Object, e Entry, f diff.Finding, episode int) bool {
	if !l.remember(e, f, func(r *record) *uint64 { return &r.episode }, uint64(episode)) {
		return false
	}
	l.events.emit(obj, "Warning", ReasonCorrectionBlocked, "Correct", Describe(f))
	l.metrics.Corrections.WithLabelValues("blocked").Inc()
	return true
}

// RolloutHeld keeps f, a change held for its Cluster's turn in a paced rollout, as the drift that
// remains of e, and announces on obj (the waiting Cluster), once per set of stuck rollouts that
// hold it, that they have not finished in time: RolloutHeld naming them, counted as blocked.
// Waiting for a turn while the waves move is not announced.
func (l *Ledger) RolloutHeld(obj runtime.Object, e Entry, f diff.Finding, stuck []string) bool {
	var v uint64
	if len(stuck) > 0 {
		v = hashString(strings.Join(stuck, ","))
	}
	if !l.remember(e, f, func(r *record) *uint64 { return &r.stuck }, v) || v == 0 {
		return false
	}
	l.events.emit(obj, "Warning", ReasonRolloutHeld, "Correct", Describe(f))
	l.metrics.Corrections.WithLabelValues("blocked").Inc()
	return true
}

// Corrected announces a correction (DriftCorrected, counted as succeeded); the drift ended.
func (l *Ledger) Corrected(obj runtime.Object, e Entry, f diff.Finding) {
	l.Clear(e)
	l.events.corrected(obj, f)
	l.metrics.Corrections.WithLabelValues("succeeded").Inc()
}

// Replaced announces a requested Machine replacement (MachineReplacementRequested, counted as
// succeeded); the finding is kept until the cloud no longer shows it.
func (l *Ledger) Replaced(obj runtime.Object, f diff.Finding, method string) {
	l.events.emit(obj, "Normal", ReasonMachineReplacementRequested, "Replace", Describe(f)+": replacement by "+method)
	l.metrics.Corrections.WithLabelValues("succeeded").Inc()
}

// Failed announces a correction the API server or the cloud refused or that could not be made
// (CorrectionFailed with the error and a hint, counted as failed), once per distinct failure of
// the same drift: a transient failure retried with backoff is not announced on every retry. It
// reports whether it announced.
func (l *Ledger) Failed(obj runtime.Object, e Entry, f diff.Finding, err error, hint string) bool {
	if !l.remember(e, f, func(r *record) *uint64 { return &r.failed }, fingerprint(f)^hashString(err.Error())) {
		return false
	}
	l.events.failed(obj, f, err, hint)
	l.metrics.Corrections.WithLabelValues("failed").Inc()
	return true
}

// Warn records fleet-level trouble (a fetch, a render, an inventory) as a Warning Event on the
// status ConfigMap, every time it is called.
func (l *Ledger) Warn(reason, note string) {
	if l.status != nil && l.status.Writable() {
		l.events.emit(l.status.Object(), "Warning", reason, "Reconcile", note)
	}
}

// Announce records a fleet-level Warning on obj (the status ConfigMap when nil) when topic's
// value changed since it was last announced — once per occurrence — and reports whether it did.
func (l *Ledger) Announce(obj runtime.Object, topic, value, reason, note string) bool {
	l.mu.Lock()
	seen, ok := l.topics[topic]
	l.topics[topic] = value
	l.mu.Unlock()
	if ok && seen == value {
		return false
	}
	if obj == nil {
		if l.status == nil || !l.status.Writable() {
			return true
		}
		obj = l.status.Object()
	}
	l.events.emit(obj, "Warning", reason, "Reconcile", note)
	return true
}

// Withdraw ends topic: announced again if it comes back.
func (l *Ledger) Withdraw(topic string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.topics, topic)
}

// Topics are the topics announced and not withdrawn whose name starts with prefix.
func (l *Ledger) Topics(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for t := range l.topics {
		if len(t) >= len(prefix) && t[:len(prefix)] == prefix {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// Current is the drift of entry that remains, or nil.
func (l *Ledger) Current(e Entry) *diff.Finding {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.entries[e]; r != nil && r.finding != nil {
		f := *r.finding
		return &f
	}
	return nil
}

// Keys are the objects set holds drift of.
func (l *Ledger) Keys(set Set) []diff.Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []diff.Key
	for e, r := range l.entries {
		if e.Set == set && r.finding != nil {
			out = append(out, e.Key)
		}
	}
	slices.SortFunc(out, func(a, b diff.Key) int {
		if a.String() < b.String() {
			return -1
		}
		if a.String() > b.String() {
			return 1
		}
		return 0
	})
	return out
}

// Remaining is every drift that remains, of every set, ordered by cluster, kind, namespace, name.
func (l *Ledger) Remaining() []diff.Finding {
	l.mu.Lock()
	out := make([]diff.Finding, 0, len(l.entries))
	for _, r := range l.entries {
		if r.finding != nil {
			out = append(out, *r.finding)
		}
	}
	l.mu.Unlock()
	SortFindings(out)
	return out
}

// Publish sets the drift metrics to what remains.
func (l *Ledger) Publish() { l.metrics.SetDrift(l.Remaining()) }

// SortFindings orders findings by cluster, kind, namespace and name.
func SortFindings(out []diff.Finding) {
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		if a.Object.Kind != b.Object.Kind {
			return a.Object.Kind < b.Object.Kind
		}
		if a.Object.Namespace != b.Object.Namespace {
			return a.Object.Namespace < b.Object.Namespace
		}
		return a.Object.Name < b.Object.Name
	})
}
