package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
)

// MemoStore keeps the engine's clean verdicts across restarts, in the ConfigMap
// driftd-memo-<owner> of driftd's namespace: a set of 64-bit hashes, one per object found equal to
// Git, of (configuration, object, desired content, live uid + generation + labels/annotations). A
// restarted driftd takes an object whose hash is in the set as clean without a dry run, so a
// restart costs requests in proportion to what changed while it was down, not to the fleet. Drift,
// verdicts and anything else are never stored: they are found again.
type MemoStore struct {
	client    client.Client
	namespace string
	name      string

	// salt makes a stored verdict stand only for this driftd version, owner and ignore rules.
	salt string

	restoreOnce sync.Once
	mu          sync.Mutex
	restored    map[uint64]bool // the set an earlier driftd stored, read once
	last        uint64          // fingerprint of the set last read or written
}

// memoLimit is the most bytes of hashes stored (a ConfigMap holds at most 1 MiB): 110,000 objects.
const memoLimit = 900 << 10

// NewMemoStore returns the store of owner's verdicts in namespace.
func NewMemoStore(c client.Client, namespace, owner string) *MemoStore {
	return &MemoStore{client: c, namespace: namespace, name: "driftd-memo-" + owner}
}

// load returns the stored set (empty when there is none).
func (s *MemoStore) load(ctx context.Context) (map[uint64]bool, error) {
	cm := &corev1.ConfigMap{}
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return map[uint64]bool{}, nil
		}
		return nil, err
	}
	raw := cm.BinaryData["clean"]
	set := make(map[uint64]bool, len(raw)/8)
	for i := 0; i+8 <= len(raw); i += 8 {
		set[binary.LittleEndian.Uint64(raw[i:])] = true
	}
	s.last = fingerprintOf(raw)
	return set, nil
}

// save stores hashes when they differ from what was last read or written.
func (s *MemoStore) save(ctx context.Context, hashes []uint64) error {
	slices.Sort(hashes)
	raw := make([]byte, 8*len(hashes))
	for i, h := range hashes {
		binary.LittleEndian.PutUint64(raw[8*i:], h)
	}
	if len(raw) > memoLimit {
		raw = nil // too large to keep: a restart dry-runs everything
	}
	fp := fingerprintOf(raw)
	if fp == s.last {
		return nil
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: map[string]string{"app.kubernetes.io/name": "driftd"}},
		BinaryData: map[string][]byte{"clean": raw},
	}
	if err := s.client.Patch(ctx, cm, client.Apply, client.FieldOwner(apply.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	s.last = fp
	return nil
}

func fingerprintOf(raw []byte) uint64 {
	h := fnv.New64a()
	h.Write(raw)
	return h.Sum64() ^ uint64(len(raw))
}

// cleanHash is the stored identity of a clean verdict on key at mk under salt.
func cleanHash(salt string, key diff.Key, mk memoKey) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%s\x00%s\x00%d", salt, key.Group, key.Kind, key.Namespace, key.Name, mk.desired, mk.uid, mk.version, mk.metadata)
	return h.Sum64()
}

// restoredClean reports whether a verdict stored by an earlier driftd says key at mk is clean. The
// store is read once, on first use; a store that cannot be read restores nothing.
func (s *MemoStore) restoredClean(ctx context.Context, log logr.Logger, key diff.Key, mk memoKey) bool {
	if s == nil || mk.uid == "" {
		return false
	}
	s.restoreOnce.Do(func() {
		set, err := s.load(ctx)
		if err != nil {
			log.Info("Cannot read the remembered verdicts; every object is dry-run once", "error", err.Error())
			return
		}
		s.mu.Lock()
		s.restored = set
		s.mu.Unlock()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored[cleanHash(s.salt, key, mk)]
}

// restoredClean reports whether an earlier driftd stored key at mk as clean.
func (e *Engine) restoredClean(ctx context.Context, key diff.Key, mk memoKey) bool {
	return e.deps.Memo.restoredClean(ctx, e.deps.Log, key, mk)
}

// SaveVerdicts stores the clean verdicts of the objects of the current snapshot, when they changed,
// as the end of a cycle does.
func (e *Engine) SaveVerdicts(ctx context.Context) {
	if s := e.snap.Load(); s != nil {
		e.saveClean(ctx, s)
	}
}

// saveClean stores the clean verdicts of the objects of s, when they changed.
func (e *Engine) saveClean(ctx context.Context, s *snapshot) {
	if e.deps.Memo == nil || !e.statusWritable() {
		return
	}
	salt := e.deps.Memo.salt
	e.mu.Lock()
	mark := memoMark{s, e.memoGen}
	if e.memoSaved == mark {
		e.mu.Unlock()
		return
	}
	hashes := make([]uint64, 0, len(e.memo))
	for key, m := range e.memo {
		if _, ok := s.desired[key]; ok && m.key.uid != "" && len(m.fields) == 0 && m.rejected == nil {
			hashes = append(hashes, cleanHash(salt, key, m.key))
		}
	}
	e.mu.Unlock()
	if err := e.deps.Memo.save(ctx, hashes); err != nil {
		if !errors.Is(err, context.Canceled) {
			e.deps.Log.Info("Cannot store the remembered verdicts; a restart dry-runs every object", "error", err.Error())
		}
		return
	}
	e.mu.Lock()
	e.memoSaved = mark
	e.mu.Unlock()
}
