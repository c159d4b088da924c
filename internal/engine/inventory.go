package engine

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/diff"
)

// Ownership is what driftd keeps, not what an object says: only an object in driftd's inventory —
// recorded with its UID when driftd applied it — is driftd's, and only such an object can be an
// orphan. A label or an annotation anyone who may edit the object can write (and copy) makes
// nothing driftd's, so it can neither make driftd delete an object nor hold back a prune with
// forged orphans. Flux keeps a Kustomization's inventory the same way.

// OwnedObject is one object driftd is responsible for.
type OwnedObject struct {
	// Version is the API version the object was rendered with.
	Version string
	// UID is the live object's; an object of the same name with another UID is not driftd's.
	UID types.UID
	// Cluster is the Cluster the object belongs to ("" for none).
	Cluster string
}

// Owned is driftd's inventory: the objects it is responsible for, by key.
type Owned map[diff.Key]OwnedObject

// InventoryStore keeps an owner's inventory in driftd's namespace: ConfigMaps
// driftd-inventory-<owner>-<hash> each hold part of it (gzip, at most inventoryChunk bytes, so a
// fleet of any size fits), and driftd-inventory-<owner> names the parts with their SHA-256. A
// part is written before the index that names it and removed only after, so a driftd stopped at
// any point leaves an index whose parts are all there.
type InventoryStore struct {
	client    client.Client
	namespace string
	owner     string

	last string // the index last read or written
}

// inventoryChunk is the most bytes of compressed entries one ConfigMap holds (a ConfigMap holds
// at most 1 MiB).
const inventoryChunk = 768 << 10

// inventoryLabel marks an owner's inventory ConfigMaps.
const inventoryLabel = "driftd.io/inventory"

// NewInventoryStore returns owner's inventory store in namespace.
func NewInventoryStore(c client.Client, namespace, owner string) *InventoryStore {
	return &InventoryStore{client: c, namespace: namespace, owner: owner}
}

func (s *InventoryStore) indexName() string { return "driftd-inventory-" + s.owner }

// Load returns the stored inventory; an empty one when none was ever stored. An inventory that
// cannot be read whole is an error: driftd then knows of no orphan.
func (s *InventoryStore) Load(ctx context.Context) (Owned, error) {
	idx := &corev1.ConfigMap{}
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.indexName()}, idx); err != nil {
		if apierrors.IsNotFound(err) {
			return Owned{}, nil
		}
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", s.namespace, s.indexName(), err)
	}
	inv := Owned{}
	for _, part := range strings.Fields(idx.Data["parts"]) {
		name, sum, ok := strings.Cut(part, "@")
		if !ok {
			return nil, fmt.Errorf("ConfigMap %s/%s: part %q is not name@sha256", s.namespace, s.indexName(), part)
		}
		cm := &corev1.ConfigMap{}
		if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, cm); err != nil {
			return nil, fmt.Errorf("reading inventory part %s/%s: %w", s.namespace, name, err)
		}
		data := cm.BinaryData["entries.gz"]
		if got := sha(data); got != sum {
			return nil, fmt.Errorf("inventory part %s/%s: checksum %s, the index says %s", s.namespace, name, got, sum)
		}
		if err := decodeEntries(data, inv); err != nil {
			return nil, fmt.Errorf("inventory part %s/%s: %w", s.namespace, name, err)
		}
	}
	if n, err := strconv.Atoi(idx.Data["entries"]); err != nil || n != len(inv) {
		return nil, fmt.Errorf("ConfigMap %s/%s: says %q entries, its parts hold %d", s.namespace, s.indexName(), idx.Data["entries"], len(inv))
	}
	s.last = idx.Data["parts"]
	return inv, nil
}

// Save stores inv when it differs from what was last read or written.
func (s *InventoryStore) Save(ctx context.Context, inv Owned) error {
	chunks, err := encodeEntries(inv)
	if err != nil {
		return err
	}
	var parts []string
	for _, c := range chunks {
		sum := sha(c)
		parts = append(parts, s.indexName()+"-"+sum[:12]+"@"+sum)
	}
	index := strings.Join(parts, " ")
	if index == s.last {
		return nil
	}
	labels := map[string]string{"app.kubernetes.io/name": "driftd", inventoryLabel: s.owner}
	for i, c := range chunks {
		name, _, _ := strings.Cut(parts[i], "@")
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: name, Labels: labels},
			BinaryData: map[string][]byte{"entries.gz": c}}
		// A part is named after its content: one that exists already holds the same entries.
		if err := s.client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("writing inventory part %s/%s: %w", s.namespace, name, err)
		}
	}
	idx := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.indexName(), Labels: labels},
		Data:       map[string]string{"parts": index, "entries": strconv.Itoa(len(inv))},
	}
	if err := s.client.Patch(ctx, idx, client.Apply, client.FieldOwner(apply.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing ConfigMap %s/%s: %w", s.namespace, s.indexName(), err)
	}
	s.last = index
	// Parts no index names any more.
	list := &corev1.ConfigMapList{}
	if err := s.client.List(ctx, list, client.InNamespace(s.namespace), client.MatchingLabels{inventoryLabel: s.owner}); err != nil {
		return nil // left for the next save
	}
	for i := range list.Items {
		cm := &list.Items[i]
		if cm.Name != s.indexName() && !strings.Contains(" "+index, " "+cm.Name+"@") {
			_ = s.client.Delete(ctx, cm)
		}
	}
	return nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// encodeEntries writes inv as sorted lines "group version kind namespace name uid cluster", gzip'd
// in chunks of at most inventoryChunk bytes. An empty inventory is one empty chunk.
func encodeEntries(inv Owned) ([][]byte, error) {
	lines := make([]string, 0, len(inv))
	for k, e := range inv {
		lines = append(lines, strings.Join([]string{orDash(k.Group), e.Version, k.Kind, orDash(k.Namespace), k.Name, string(e.UID), orDash(e.Cluster)}, " "))
	}
	slices.Sort(lines)
	var chunks [][]byte
	for start := 0; start < len(lines) || len(chunks) == 0; {
		// Grow the chunk while it stays under the limit: halve the lines until it fits.
		end := len(lines)
		for {
			c, err := gz(lines[start:end])
			if err != nil {
				return nil, err
			}
			if len(c) <= inventoryChunk || end-start <= 1 {
				chunks = append(chunks, c)
				break
			}
			end = start + (end-start)/2
		}
		start = end
	}
	return chunks, nil
}

func gz(lines []string) ([]byte, error) {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeEntries(data []byte, into Owned) error {
	r, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 7 {
			return fmt.Errorf("entry %q: want 7 fields", sc.Text())
		}
		k := diff.Key{Group: fromDash(f[0]), Kind: f[2], Namespace: fromDash(f[3]), Name: f[4]}
		into[k] = OwnedObject{Version: f[1], UID: types.UID(f[5]), Cluster: fromDash(f[6])}
	}
	return sc.Err()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fromDash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// gvk is the kind of an inventory entry.
func (e OwnedObject) gvk(k diff.Key) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: k.Group, Version: e.Version, Kind: k.Kind}
}

// errInventory marks an inventory that could not be read: no orphan is known.
var errInventory = errors.New("driftd's inventory cannot be read")
