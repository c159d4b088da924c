package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	inventoryv1 "github.com/driftd/driftd/api/inventory/v1"
	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/infra/endpoint"
)

var prodEU1 = []infra.Cluster{{Namespace: "fleet-eu", Name: "prod-eu-1"}}

func writeToken(t *testing.T, token string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDriftdReadsTheReferenceEndpoint: driftd's reader, over TLS with a token, pages through the
// example inventory and gets every instance and pool as the file states them.
func TestDriftdReadsTheReferenceEndpoint(t *testing.T) {
	srv := httptest.NewTLSServer(NewServer(fileBackend{path: "inventory.json"}, writeToken(t, "s3cret"), 2))
	t.Cleanup(srv.Close)
	p, err := endpoint.New(endpoint.Options{Name: "in-house", URL: srv.URL, TokenFile: writeToken(t, "s3cret"),
		Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := p.Snapshot(context.Background(), prodEU1)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Complete || snap.Calls["snapshot"] != 2 {
		t.Errorf("complete %v after %d pages; want complete after 2", snap.Complete, snap.Calls["snapshot"])
	}
	var got []string
	for _, i := range snap.Instances {
		got = append(got, i.ID+"="+i.State+"/"+i.Type)
	}
	if want := "eu-1/vm-0001=running/c4.large eu-1/vm-0002=running/c4.xlarge eu-1/vm-0003=stopped/c4.xlarge"; strings.Join(got, " ") != want {
		t.Errorf("instances %v, want %s", got, want)
	}
	if len(snap.Pools) != 1 || snap.Pools[0].Desired != 2 || snap.Pools[0].Cluster != "fleet-eu/prod-eu-1" {
		t.Errorf("pools %+v", snap.Pools)
	}

	other, _ := endpoint.New(endpoint.Options{Name: "in-house", URL: srv.URL, TokenFile: writeToken(t, "guess"), Transport: srv.Client().Transport})
	if _, err := other.Snapshot(context.Background(), prodEU1); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a wrong token: %v; want 401", err)
	}
}

// changing is a backend whose inventory changes after each listing: the cloud does not wait.
type changing struct {
	mu    sync.Mutex
	calls int
}

func (c *changing) List(context.Context, []inventoryv1.RequestedCluster) (*Listing, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	l := &Listing{}
	// Each listing drops the first instance and adds one at the end, shifting every offset.
	for i := c.calls; i < c.calls+5; i++ {
		l.Instances = append(l.Instances, inventoryv1.Instance{ProviderID: "in-house://vm-" + string(rune('a'+i)),
			Cluster: inventoryv1.ClusterRef{Namespace: "fleet-eu", Name: "prod-eu-1"}, State: "running"})
	}
	return l, nil
}

// TestPagesComeFromOneView: an instance that exists all along is never missing from an answer
// because the inventory changed between two pages.
func TestPagesComeFromOneView(t *testing.T) {
	b := &changing{}
	srv := httptest.NewServer(NewServer(b, "", 2))
	t.Cleanup(srv.Close)
	p, err := endpoint.New(endpoint.Options{Name: "in-house", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		snap, err := p.Snapshot(context.Background(), prodEU1)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Instances) != 5 {
			t.Errorf("%d instances; want the 5 of one view", len(snap.Instances))
		}
	}
	if b.calls != 3 {
		t.Errorf("the backend was listed %d times; want once per snapshot", b.calls)
	}
}

func TestTheExampleIsAValidAnswer(t *testing.T) {
	data, err := os.ReadFile("inventory.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var r inventoryv1.SnapshotResponse
	if err := dec.Decode(&r); err != nil || r.APIVersion != inventoryv1.APIVersion || !r.Complete {
		t.Fatalf("inventory.json: %v (%+v)", err, r)
	}
}
