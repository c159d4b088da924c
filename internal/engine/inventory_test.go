package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
)

// TestInventoryStoreKeepsAFleetOfAnySize: an inventory of 120,000 objects (a fleet of 10,000
// clusters) is stored in parts that each fit a ConfigMap, read back whole, and written again only
// when it changed; a part that went missing makes the inventory unreadable rather than smaller.
func TestInventoryStoreKeepsAFleetOfAnySize(t *testing.T) {
	ctx := context.Background()
	ns := "inventory-store"
	if err := env.InstallNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	inv := Owned{}
	for i := range 120_000 {
		c := fmt.Sprintf("c%05d", i/12)
		inv[diff.Key{Group: "cluster.x-k8s.io", Kind: "MachineDeployment", Namespace: "fleet-" + c, Name: fmt.Sprintf("%s-md-%d", c, i%12)}] =
			OwnedObject{Version: "v1beta2", UID: types.UID(fmt.Sprintf("%08x-1111-2222-3333-%012x", i, i*7919)), Cluster: c}
	}
	inv[diff.Key{Kind: "Namespace", Name: "fleet-c00000"}] = OwnedObject{Version: "v1", UID: "ns-uid"}
	store := NewInventoryStore(env.Client, ns, "big")
	if err := store.Save(ctx, inv); err != nil {
		t.Fatal(err)
	}
	list := &corev1.ConfigMapList{}
	if err := env.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{inventoryLabel: "big"}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) < 3 {
		t.Errorf("%d ConfigMaps, want the index and several parts", len(list.Items))
	}
	for _, cm := range list.Items {
		if n := len(cm.BinaryData["entries.gz"]); n > inventoryChunk {
			t.Errorf("part %s holds %d bytes", cm.Name, n)
		}
	}
	got, err := NewInventoryStore(env.Client, ns, "big").Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(inv, got); diff != "" {
		t.Fatalf("inventory read back (-saved +read):\n%s", diff)
	}

	// Unchanged: no write. Changed: the parts no index names are gone.
	rv := map[string]string{}
	for _, cm := range list.Items {
		rv[cm.Name] = cm.ResourceVersion
	}
	if err := store.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	delete(got, diff.Key{Kind: "Namespace", Name: "fleet-c00000"})
	if err := store.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	after := &corev1.ConfigMapList{}
	if err := env.Client.List(ctx, after, client.InNamespace(ns), client.MatchingLabels{inventoryLabel: "big"}); err != nil {
		t.Fatal(err)
	}
	idx := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "driftd-inventory-big"}, idx); err != nil {
		t.Fatal(err)
	}
	for _, cm := range after.Items {
		if cm.Name != idx.Name && !strings.Contains(idx.Data["parts"], cm.Name+"@") {
			t.Errorf("part %s is left behind", cm.Name)
		}
	}

	// A part that went missing: unreadable, not smaller.
	for _, cm := range after.Items {
		if cm.Name != idx.Name {
			if err := env.Client.Delete(ctx, &cm); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if got, err := NewInventoryStore(env.Client, ns, "big").Load(ctx); err == nil {
		t.Errorf("an inventory missing a part was read with %d entries", len(got))
	}
	if got, err := NewInventoryStore(env.Client, ns, "none").Load(ctx); err != nil || len(got) != 0 {
		t.Errorf("no inventory yet: %d entries, %v", len(got), err)
	}
}
