package diff

import (
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/infra"
)

// Look is where a provider keeps one cluster's instances: the locations (an AWS identity's region,
// a vCenter) its snapshot answers for.
type Look struct {
	// Provider is the inventory's provider.
	Provider string
	// Cluster is the cluster's key ("namespace/name").
	Cluster string
	// Locations are the regions or vCenters the cluster's instances live in.
	Locations []string
}

// Vanished is the check a whole location's answer gets: a location that held some of a cluster's
// instances at the last look (prev) and now answers with none of them, while Machines of the
// cluster with a providerID remain, is taken for a wrong answer — a region or a vCenter does not
// empty itself between two looks. It returns the suspect clusters with why, and what to remember
// for the next look: the counts seen now, but the last good count of a suspect location, so the
// location stays suspect until it answers with its instances again. Clusters the snapshot could not
// read are left as they were.
func Vanished(prev map[string]int, looks []Look, snap *infra.Snapshot, machines []*unstructured.Unstructured) (map[string]string, map[string]int) {
	// Every instance listed counts, terminated ones too: a location that lists a cluster's instance
	// as terminated answered about it (the instance is gone, and judged so); only a location that
	// lists none of them emptied itself. Leaving terminated ones out held a cluster whose only
	// instance was terminated suspect for ever, its Machine never replaced.
	seen := map[string]int{}
	for _, inst := range snap.Instances {
		if inst.Cluster != "" {
			seen[inst.Cluster+"@"+inst.Region]++
		}
	}
	withMachines := map[string]int{}
	for _, m := range machines {
		if pid, _, _ := unstructured.NestedString(m.Object, "spec", "providerID"); pid != "" {
			withMachines[clusterOf(m)]++
		}
	}
	suspect := map[string]string{}
	next := maps.Clone(prev)
	if next == nil {
		next = map[string]int{}
	}
	for _, l := range looks {
		if _, unavailable := snap.Unavailable[l.Cluster]; unavailable {
			continue
		}
		for _, loc := range l.Locations {
			k := l.Provider + "/" + l.Cluster + "@" + loc
			before, now := prev[k], seen[l.Cluster+"@"+loc]
			if before > 0 && now == 0 && withMachines[l.Cluster] > 0 {
				where := l.Provider
				if loc != "" {
					where += " " + loc
				}
				suspect[l.Cluster] = fmt.Sprintf("%s held %d of its instances at the last look and now answers with none while %d of its Machines remain",
					where, before, withMachines[l.Cluster])
				continue // the last good count stays until the location answers again
			}
			next[k] = now
		}
	}
	return suspect, next
}
