package capi

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// wavesNS is the namespace of the paced fleet.
const wavesNS = "fleet-waves"

// machineLog records every Machine of a namespace as a watch sees it: its cluster, its creation
// time and the time its deletion began (the API server's own timestamps), by UID.
type machineLog struct {
	mu       sync.Mutex
	machines map[string]*loggedMachine
}

type loggedMachine struct {
	name, cluster     string
	created, deleting time.Time
	worker            bool
}

// logMachines watches the Machines of ns until the test ends.
func logMachines(t *testing.T, ns string) *machineLog {
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.Watch(ctx, &clusterv1.MachineList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	l := &machineLog{machines: map[string]*loggedMachine{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			m, ok := ev.Object.(*clusterv1.Machine)
			if !ok || ev.Type == watch.Error {
				continue
			}
			l.mu.Lock()
			lm := l.machines[string(m.UID)]
			if lm == nil {
				_, cp := m.Labels[clusterv1.MachineControlPlaneLabel]
				lm = &loggedMachine{name: m.Name, cluster: m.Spec.ClusterName, created: m.CreationTimestamp.Time, worker: !cp}
				l.machines[string(m.UID)] = lm
			}
			if m.DeletionTimestamp != nil && lm.deleting.IsZero() {
				lm.deleting = m.DeletionTimestamp.Time
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); cancel(); <-done })
	return l
}

// span is when a cluster had a worker Machine being replaced: from the first new worker Machine's
// creation to the last old one's deletion, by the API server's timestamps (whole seconds).
type span struct {
	cluster    string
	begin, end time.Time
}

// replacements are the spans of the clusters whose worker Machines among before (UIDs) were
// replaced, in the order they began.
func (l *machineLog) replacements(before map[string]bool) []span {
	l.mu.Lock()
	defer l.mu.Unlock()
	byCluster := map[string]*span{}
	for uid, m := range l.machines {
		if !m.worker {
			continue
		}
		s := byCluster[m.cluster]
		if s == nil {
			s = &span{cluster: m.cluster}
			byCluster[m.cluster] = s
		}
		if before[uid] {
			if !m.deleting.IsZero() && m.deleting.After(s.end) {
				s.end = m.deleting
			}
		} else if s.begin.IsZero() || m.created.Before(s.begin) {
			s.begin = m.created
		}
	}
	var out []span
	for _, s := range byCluster {
		if !s.begin.IsZero() {
			out = append(out, *s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].begin.Before(out[j].begin) })
	return out
}

// TestAClassChangePacedThroughTheFleet runs `driftd run --max-rolling-clusters 1` over four Clusters
// of a ClusterClass, one labelled the canary wave, and commits what Cluster API prescribes to pace a
// class change: a new ClusterClass with another worker template, and every Cluster's classRef
// moved to it. Cluster API's controllers then replace the workers of one Cluster after the other,
// the canary first, as the Machines' own timestamps show. A second class whose Machines never
// become available stops at the canary: the others hold, and say so.
func TestAClassChangePacedThroughTheFleet(t *testing.T) {
	clusters := []string{"w1", "w2", "w3", "w4"} // w4 is the canary
	const canary = "w4"
	class := fleet.Read("capi/clusterclass.yaml")
	cc1 := fleet.Read("capi/cc1.yaml")
	f := fleet.New(wavesNS).Add("clusterclass.yaml", class)
	cluster := func(name, classRef string) string {
		c := strings.Replace(cc1, "name: cc1\n", "name: "+name+"\n", 1)
		if name == canary {
			c = strings.Replace(c, "metadata:\n", "metadata:\n  labels:\n    "+diff.LabelRolloutWave+": \"0\"\n", 1)
		}
		return strings.Replace(c, "classRef:\n      name: in-memory\n", "classRef:\n      name: "+classRef+"\n", 1)
	}
	for _, c := range clusters {
		f.Add(c+".yaml", cluster(c, "in-memory"))
	}
	files := f.Files()
	repo := testenv.NewGitRepo(t, files)
	system := drv.Namespace(t, "driftd-system")
	metrics := testenv.FreeAddr(t)
	drv.Start(t, system, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", drv.Kubeconfig(t),
		"--owner", "waves", "--git-cache-dir", t.TempDir(), "--interval", "10s", "--metrics-bind-address", metrics,
		"--max-rolling-clusters", "1", "--rollout-timeout", "45s")
	workers := func(c string) []string {
		var out []string
		for _, m := range drv.ByName(t, diff.GVKMachine, wavesNS, map[string]string{clusterv1.ClusterNameLabel: c}) {
			if _, cp := m.GetLabels()[clusterv1.MachineControlPlaneLabel]; !cp {
				if driver.IsRunning(m) {
					out = append(out, string(m.GetUID()))
				}
			}
		}
		return out
	}
	all := func(c string) int {
		return len(drv.ByName(t, diff.GVKMachine, wavesNS, map[string]string{clusterv1.ClusterNameLabel: c}))
	}
	testenv.Eventually(t, 5*time.Minute, "the four clusters' Machines Running (a control plane of 1, a worker)", func() bool {
		for _, c := range clusters {
			if len(workers(c)) != 1 || all(c) != 2 {
				return false
			}
		}
		return true
	})
	log := logMachines(t, wavesNS)

	// A new class: the same templates but the workers' infrastructure, which has another spec.
	newClass := func(name, template, startup string) string {
		i := strings.Index(class, "apiVersion: cluster.x-k8s.io/v1beta2\nkind: ClusterClass\n")
		const worker = "in-memory-default-worker-machinetemplate"
		j := strings.Index(class, "kind: DevMachineTemplate\nmetadata:\n  name: "+worker+"\n")
		end := strings.Index(class[j:], "---\n")
		tmpl := "apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\n" + strings.Replace(class[j:j+end], "name: "+worker+"\n", "name: "+template+"\n", 1)
		tmpl = strings.ReplaceAll(tmpl, `startupDuration: "2s"`, `startupDuration: "`+startup+`"`)
		cc := strings.Replace(class[i:], "  name: in-memory\n", "  name: "+name+"\n", 1)
		cc = strings.Replace(cc, "name: "+worker+"\n", "name: "+template+"\n", 1)
		return tmpl + "---\n" + cc
	}
	moveTo := func(name, template, startup string) map[string]string {
		out := map[string]string{"fleet/" + name + ".yaml": newClass(name, template, startup),
			"fleet/kustomization.yaml": strings.Replace(files["fleet/kustomization.yaml"], "- clusterclass.yaml\n", "- clusterclass.yaml\n- "+name+".yaml\n", 1)}
		for _, c := range clusters {
			out["fleet/"+c+".yaml"] = cluster(c, name)
		}
		return out
	}

	// allWorkers are the UIDs of the four clusters' running workers.
	allWorkers := func() map[string]bool {
		out := map[string]bool{}
		for _, c := range clusters {
			for _, uid := range workers(c) {
				out[uid] = true
			}
		}
		return out
	}

	t.Run("one cluster at a time, the canary first", func(t *testing.T) {
		before := allWorkers()
		commit := repo.Commit(t, "move the fleet to a class with another worker template", moveTo("in-memory-v2", "waves-worker-v2", "3s"))
		began := time.Now()
		testenv.Eventually(t, 8*time.Minute, "every cluster's worker replaced", func() bool {
			for _, c := range clusters {
				now := workers(c)
				if len(now) != 1 || before[now[0]] || all(c) != 2 {
					return false
				}
			}
			return true
		})
		spans := log.replacements(before)
		var order []string
		for _, s := range spans {
			order = append(order, fmt.Sprintf("%s %s–%s", s.cluster, s.begin.Format("15:04:05"), s.end.Format("15:04:05")))
		}
		t.Logf("commit %s rolled through the fleet in %s: %s", commit[:7], time.Since(began).Round(time.Second), strings.Join(order, ", "))
		if len(spans) != 4 || spans[0].cluster != canary || !slices.Equal([]string{spans[1].cluster, spans[2].cluster, spans[3].cluster}, []string{"w1", "w2", "w3"}) {
			t.Fatalf("the replacements, in the order they began: %v; want the canary w4, then w1, w2, w3", order)
		}
		for i, s := range spans {
			if s.end.IsZero() || s.end.Before(s.begin) {
				t.Errorf("%s: its old worker's deletion was not seen after its new worker's creation: %v", s.cluster, order)
			}
			// Whole seconds: the next cluster's first new Machine is created no earlier than the
			// second in which the one before deleted its last old Machine.
			if i > 0 && s.begin.Before(spans[i-1].end) {
				t.Errorf("%s began replacing Machines at %s, before %s finished at %s: two clusters rolled at once",
					s.cluster, s.begin.Format(time.TimeOnly), spans[i-1].cluster, spans[i-1].end.Format(time.TimeOnly))
			}
		}
	})
	if t.Failed() {
		return
	}
	testenv.Eventually(t, 2*time.Minute, "every MachineDeployment up to date and available", func() bool {
		for _, md := range drv.ByName(t, diff.GVKMachineDeployment, wavesNS, nil) {
			for _, f := range []string{"replicas", "upToDateReplicas", "availableReplicas"} {
				if n, _, _ := unstructured.NestedInt64(md.Object, "status", f); n != 1 {
					return false
				}
			}
		}
		return true
	})

	t.Run("a canary whose new Machines never become available holds the rest", func(t *testing.T) {
		before := allWorkers()
		repo.Commit(t, "move the fleet to a class whose workers never start", moveTo("in-memory-v3", "waves-worker-v3", "1h"))
		held := func(c string) bool {
			return driver.HasEvent(drv.Events(t, wavesNS, "Cluster", c), "RolloutHeld", "in-memory-v3", wavesNS+"/w4, not finished within 45s")
		}
		testenv.Eventually(t, 4*time.Minute, "RolloutHeld on the waiting clusters, naming the canary", func() bool {
			return held("w1") && held("w2") && held("w3")
		})
		t.Logf("w1's Events: %q", drv.Events(t, wavesNS, "Cluster", "w1"))
		for _, c := range []string{"w1", "w2", "w3"} {
			live := drv.ByName(t, diff.GVKCluster, wavesNS, nil)[c]
			if ref, _, _ := unstructured.NestedString(live.Object, "spec", "topology", "classRef", "name"); ref != "in-memory-v2" {
				t.Errorf("%s was moved to %s while the canary's rollout had not finished", c, ref)
			}
			if now := workers(c); len(now) != 1 || !before[now[0]] {
				t.Errorf("%s's worker was replaced while the canary's rollout had not finished", c)
			}
		}
		if got := testenv.MetricValue(metrics, `driftd_rollout_clusters{state="waiting"}`); got != 3 {
			t.Errorf("driftd_rollout_clusters{state=\"waiting\"} = %v, want 3", got)
		}
		// plan says the same: the canary's change applied, the others held behind it.
		code, doc, stderr := drv.Plan(t, "--repo", repo.Dir, "--ref", "main", "--path", "fleet", "--kubeconfig", drv.Kubeconfig(t),
			"--owner", "waves", "--namespace", system, "--git-cache-dir", t.TempDir(), "--max-rolling-clusters", "1")
		for _, c := range []string{"w1", "w2", "w3"} {
			f := doc.Finding("Cluster", c)
			if f == nil || f.Action != diff.ActionHeld || !strings.Contains(f.Reason, wavesNS+"/w4") {
				t.Errorf("plan (exit %d): %s is %+v; want held behind w4\n%s", code, c, f, stderr)
			}
		}
	})
}
