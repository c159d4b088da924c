package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
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
// POST /testbed/answer/{normal|empty|incomplete|error} makes the endpoint answer wrongly, the
// way a broken cloud API does. It is written without driftd's packages, from the protocol alone.
type inventory struct {
	client    client.Client
	addr      string
	tokenFile string

	mu     sync.Mutex
	state  map[string]string // instance ID → "stopped" or "deleted"
	answer string            // "", "empty", "incomplete", "error", "truncated" or "slow"
	views  map[string][]instance
	// snapshots counts the snapshots asked for (first pages), answered or not.
	snapshots int
}

func newInventory(c client.Client, addr, tokenFile string) *inventory {
	return &inventory{client: c, addr: addr, tokenFile: tokenFile, state: map[string]string{}, views: map[string][]instance{}}
}

// NeedLeaderElection is false: the endpoint serves whether or not this process leads.
func (inv *inventory) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (inv *inventory) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/snapshot", inv.snapshot)
	mux.HandleFunc("POST /testbed/instances/{id}/{action}", inv.outOfBand)
	mux.HandleFunc("POST /testbed/answer/{mode}", inv.setAnswer)
	mux.HandleFunc("GET /testbed/snapshots", func(w http.ResponseWriter, _ *http.Request) {
		inv.mu.Lock()
		defer inv.mu.Unlock()
		_, _ = w.Write([]byte(strconv.Itoa(inv.snapshots)))
	})
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

const apiVersion = "inventory.driftd.io/v1"

// pageSize is small, so that driftd's paging is exercised.
const pageSize = 3

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"apiVersion": apiVersion, "message": msg})
}

func (inv *inventory) authorized(r *http.Request) bool {
	if inv.tokenFile == "" {
		return true
	}
	want, err := os.ReadFile(inv.tokenFile)
	return err == nil && r.Header.Get("Authorization") == "Bearer "+strings.TrimSpace(string(want))
}

func (inv *inventory) snapshot(w http.ResponseWriter, r *http.Request) {
	if !inv.authorized(r) {
		fail(w, http.StatusUnauthorized, "a valid bearer token is required")
		return
	}
	var req snapshotRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.APIVersion != apiVersion {
		fail(w, http.StatusBadRequest, "expected an inventory.driftd.io/v1 snapshot request")
		return
	}
	inv.mu.Lock()
	if req.PageToken == "" {
		inv.snapshots++
	}
	answer := inv.answer
	inv.mu.Unlock()
	if answer == "error" {
		fail(w, http.StatusServiceUnavailable, "the cloud API is down")
		return
	}
	// One view per snapshot: the first page lists, later pages are cut from that list.
	id, offset := "", 0
	if req.PageToken == "" {
		all, err := inv.list(r.Context(), req.Clusters, answer == "empty")
		if err != nil {
			fail(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
		inv.mu.Lock()
		inv.views[id] = all
		inv.mu.Unlock()
	} else {
		var off string
		id, off, _ = strings.Cut(req.PageToken, ":")
		offset, _ = strconv.Atoi(off)
	}
	inv.mu.Lock()
	all, ok := inv.views[id]
	inv.mu.Unlock()
	if !ok {
		fail(w, http.StatusGone, "unknown or expired page token")
		return
	}
	end := min(offset+pageSize, len(all))
	if answer == "slow" && end == len(all) {
		// The page that would complete the snapshot (after the others were answered) does not
		// come within any client's timeout, as an overloaded cloud API's does not.
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Minute):
		}
	}
	resp := snapshotResponse{APIVersion: apiVersion, Instances: all[min(offset, end):end]}
	if end < len(all) {
		resp.NextPageToken = id + ":" + strconv.Itoa(end)
	} else {
		resp.Complete = answer != "incomplete"
		inv.mu.Lock()
		delete(inv.views, id)
		inv.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	if answer == "truncated" {
		// The answer breaks off in the middle, as a connection reset mid-body does.
		b, _ := json.Marshal(resp)
		_, _ = w.Write(b[:len(b)/2])
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// list lists the DevMachines of clusters as instances; empty answers with none, as a broken
// cloud API does.
func (inv *inventory) list(ctx context.Context, clusters []clusterRef, empty bool) ([]instance, error) {
	all := []instance{}
	if empty {
		return all, nil
	}
	for _, c := range clusters {
		list := &infrav1.DevMachineList{}
		if err := inv.client.List(ctx, list, client.InNamespace(c.Namespace), client.MatchingLabels{clusterv1.ClusterNameLabel: c.Name}); err != nil {
			return nil, err
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
			all = append(all, instance{ProviderID: m.Spec.ProviderID, State: st, LaunchTime: m.CreationTimestamp.Time,
				Cluster: c, Name: m.Name})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ProviderID < all[j].ProviderID })
	return all, nil
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

// setAnswer makes the endpoint answer normally, with no instances, with an answer that is not
// complete, or with an error.
func (inv *inventory) setAnswer(w http.ResponseWriter, r *http.Request) {
	mode := r.PathValue("mode")
	switch mode {
	case "normal", "empty", "incomplete", "error", "truncated", "slow":
	default:
		http.Error(w, "unknown answer "+mode, http.StatusBadRequest)
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.answer = strings.TrimPrefix(mode, "normal")
	w.WriteHeader(http.StatusNoContent)
}
