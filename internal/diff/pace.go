package diff

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// LabelRolloutWave on a Cluster (in Git) puts it in a wave of paced rollouts: lower waves roll
// first (canaries in "0"); a Cluster without it rolls in the last wave.
const LabelRolloutWave = "driftd.io/rollout-wave"

// LastWave is the wave of a Cluster without LabelRolloutWave.
const LastWave = math.MaxInt

// WaveOf is the wave LabelRolloutWave puts a Cluster in, or an error naming the value.
func WaveOf(cluster metav1.Object) (int, error) {
	v, ok := cluster.GetLabels()[LabelRolloutWave]
	if !ok {
		return LastWave, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return LastWave, fmt.Errorf("label %s: %q is not a wave number (0, 1, 2, …)", LabelRolloutWave, v)
	}
	return n, nil
}

// WaveCluster is one Cluster of the fleet as pacing sees it.
type WaveCluster struct {
	// Cluster is namespace/name; Wave its wave.
	Cluster string
	Wave    int
	// Wants: it has a change to apply that replaces Machines.
	Wants bool
	// Rolling says what its rollout still waits on ("" when its control plane and
	// MachineDeployments are up to date and available): it takes a place in the budget, whoever
	// began it. Since is when it began rolling, as far as driftd knows.
	Rolling string
	Since   time.Time
}

// Pacing is the decision about one Cluster's rolling change.
type Pacing struct {
	// Admit: apply it now.
	Admit bool
	// Reason says what it waits for (when held), naming the Clusters that hold it.
	Reason string
	// Stuck are the Clusters holding it that have rolled longer than the rollout timeout.
	Stuck []string
}

// Pace decides which Clusters' rolling changes are applied now: at most max Clusters roll at once
// (max ≤ 0: no limit), wave by wave (a wave begins once every Cluster of the waves before it has
// finished rolling), in name order within a wave. A Cluster still rolling takes a place whatever
// began its rollout; a further change to it is applied when its wave is the one under way (its
// place is its own: a fix for a stuck rollout is not held behind it). A Cluster
// whose rollout has not finished within timeout (0: never said) is named stuck: it holds the rest
// all the same, until it finishes or a person acts. Only Clusters that want to roll get a Pacing.
func Pace(cs []WaveCluster, max int, now time.Time, timeout time.Duration) map[string]Pacing {
	out := map[string]Pacing{}
	sorted := append([]WaveCluster(nil), cs...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Wave != sorted[j].Wave {
			return sorted[i].Wave < sorted[j].Wave
		}
		return sorted[i].Cluster < sorted[j].Cluster
	})
	current := LastWave
	var busy []WaveCluster
	for _, c := range sorted {
		if c.Rolling != "" {
			busy = append(busy, c)
		}
		if (c.Rolling != "" || c.Wants) && c.Wave < current {
			current = c.Wave
		}
	}
	slots := len(busy)
	var admitted []string
	for _, c := range sorted {
		switch {
		case !c.Wants:
			continue
		case max <= 0 || (c.Rolling != "" && c.Wave == current):
			// Rolling already, in the wave under way: its place is its own (a fix for a stuck
			// rollout is not held behind it).
			out[c.Cluster] = Pacing{Admit: true}
			continue
		case c.Wave == current && slots < max:
			slots++
			admitted = append(admitted, c.Cluster)
			out[c.Cluster] = Pacing{Admit: true}
			continue
		}
		var names, stuck []string
		for _, b := range busy {
			what := fmt.Sprintf("%s (%s)", b.Cluster, b.Rolling)
			if timeout > 0 && !b.Since.IsZero() && now.Sub(b.Since) > timeout {
				what = fmt.Sprintf("%s, not finished within %s (%s)", b.Cluster, timeout, b.Rolling)
				stuck = append(stuck, b.Cluster)
			}
			names = append(names, what)
		}
		names = append(names, admitted...)
		var why string
		if c.Wave > current {
			why = fmt.Sprintf("its wave (%s) begins once wave %s has rolled", waveName(c.Wave), waveName(current))
		} else {
			why = fmt.Sprintf("at most %d clusters roll at once (--max-rolling-clusters)", max)
		}
		out[c.Cluster] = Pacing{Reason: fmt.Sprintf("rollout held: %s; rolling: %s", why, strings.Join(names, "; ")), Stuck: stuck}
	}
	return out
}

func waveName(w int) string {
	if w == LastWave {
		return "unlabelled"
	}
	return strconv.Itoa(w)
}

// RolloutProgress says what a Cluster's rollout still waits on, from what Cluster API reports:
// its topology reconciled at its generation (a Cluster with a topology), every control plane and
// MachineDeployment of it observed at its generation with all its replicas up to date and
// available, no Machine of it being deleted, and, when driftd began a rollout of expect Machines
// at since, that many Machines created since then running. "" when it waits on nothing.
func RolloutProgress(cluster *unstructured.Unstructured, pools, machines []*unstructured.Unstructured, since time.Time, expect int) string {
	if cluster != nil {
		if _, topology, _ := unstructured.NestedMap(cluster.Object, "spec", "topology"); topology {
			c := condition(cluster, "TopologyReconciled")
			switch {
			case c == nil || c["status"] != "True":
				reason := ""
				if c != nil {
					reason = fmt.Sprintf(" (%v)", c["reason"])
				}
				return "its topology is being reconciled" + reason
			case observed(c["observedGeneration"]) < cluster.GetGeneration():
				return "its topology is not reconciled since the change"
			}
		}
	}
	for _, p := range pools {
		name := p.GetKind() + " " + p.GetName()
		if g, _, _ := unstructured.NestedInt64(p.Object, "status", "observedGeneration"); g < p.GetGeneration() {
			return name + ": its change is not observed yet"
		}
		want, _, _ := unstructured.NestedInt64(p.Object, "spec", "replicas")
		have, _, _ := unstructured.NestedInt64(p.Object, "status", "replicas")
		upToDate, _, _ := unstructured.NestedInt64(p.Object, "status", "upToDateReplicas")
		available, _, _ := unstructured.NestedInt64(p.Object, "status", "availableReplicas")
		if have != want || upToDate < want || available < want {
			return fmt.Sprintf("%s: %d of %d Machines up to date, %d available, %d in all", name, upToDate, want, available, have)
		}
	}
	fresh := 0
	for _, m := range machines {
		if m.GetDeletionTimestamp() != nil {
			return "Machine " + m.GetName() + " is being deleted"
		}
		if !since.IsZero() && !m.GetCreationTimestamp().Time.Before(since) && machineRunning(m) && hasNode(m) {
			fresh++
		}
	}
	if expect > 0 && !since.IsZero() && fresh < expect {
		return fmt.Sprintf("%d of %d new Machines running", fresh, expect)
	}
	return ""
}

// condition is a status condition of u by type, or nil.
func condition(u *unstructured.Unstructured, kind string) map[string]any {
	cs, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["type"] == kind {
			return m
		}
	}
	return nil
}

func observed(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}
