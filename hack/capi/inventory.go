package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	infrav1 "sigs.k8s.io/cluster-api/test/infrastructure/docker/api/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// inventory serves driftd's inventory protocol (inventory.driftd.io/v1, docs/inventory.md) for
// the in-memory backend's machines, the way an in-house cloud's endpoint would: every DevMachine
// with a providerID is a running instance, until a test stops or deletes it out of band through
// POST /testbed/instances/{id}/{stop|start|delete} — the cloud changing behind Cluster API's back.
type inventory struct {
	client client.Client
	addr   string

	mu    sync.Mutex
	state map[string]string // instance ID → "stopped" or "deleted"
}

func newInventory(c client.Client, addr string) *inventory {
	return &inventory{client: c, addr: addr, state: map[string]string{}}
}

// NeedLeaderElection is false: the endpoint serves whether or not this process leads.
func (inv *inventory) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (inv *inventory) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/snapshot", inv.snapshot)
	mux.HandleFunc("POST /testbed/instances/{id}/{action}", inv.outOfBand)
	ln, err := net.Listen("tcp", inv.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type clusterRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type snapshotRequest struct {
	APIVersion string       `json:"apiVersion"`
	Clusters   []clusterRef `json:"clusters"`
	PageToken  string       `json:"pageToken,omitempty"`
}

type instance struct {
	ProviderID string     `json:"providerID"`
	ID         string     `json:"id"`
	State      string     `json:"state"`
	LaunchTime time.Time  `json:"launchTime"`
	Cluster    clusterRef `json:"cluster"`
	Name       string     `json:"name,omitempty"`
}

type snapshotResponse struct {
	APIVersion    string     `json:"apiVersion"`
	Instances     []instance `json:"instances"`
	Complete      bool       `json:"complete"`
	NextPageToken string     `json:"nextPageToken,omitempty"`
}

// pageSize is small, so that driftd's paging is exercised.
const pageSize = 3

func (inv *inventory) snapshot(w http.ResponseWriter, r *http.Request) {
	var req snapshotRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.APIVersion != "inventory.driftd.io/v1" {
		http.Error(w, "expected an inventory.driftd.io/v1 snapshot request", http.StatusBadRequest)
		return
	}
	var all []instance
	for _, c := range req.Clusters {
		list := &infrav1.DevMachineList{}
		if err := inv.client.List(r.Context(), list, client.InNamespace(c.Namespace), client.MatchingLabels{clusterv1.ClusterNameLabel: c.Name}); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, m := range list.Items {
			if m.Spec.ProviderID == "" {
				continue
			}
			id := strings.TrimPrefix(m.Spec.ProviderID, "in-memory://")
			inv.mu.Lock()
			st := inv.state[id]
			inv.mu.Unlock()
			if st == "deleted" {
				continue
			}
			if st == "" {
				st = "running"
			}
			all = append(all, instance{ProviderID: m.Spec.ProviderID, ID: id, State: st, LaunchTime: m.CreationTimestamp.Time,
				Cluster: c, Name: m.Name})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	start, _ := strconv.Atoi(req.PageToken)
	end := min(start+pageSize, len(all))
	resp := snapshotResponse{APIVersion: "inventory.driftd.io/v1", Instances: all[min(start, len(all)):end], Complete: true}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// outOfBand changes an instance behind Cluster API's back: stop, start or delete.
func (inv *inventory) outOfBand(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	inv.mu.Lock()
	defer inv.mu.Unlock()
	switch action {
	case "stop":
		inv.state[id] = "stopped"
	case "delete":
		inv.state[id] = "deleted"
	case "start":
		delete(inv.state, id)
	default:
		http.Error(w, "unknown action "+action, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
