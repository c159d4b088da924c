package engine

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
)

// paceRecheck is how soon a held change is looked at again (besides every cycle).
const paceRecheck = 5 * time.Second

// progressTTL is how long the fleet's rollout progress, once read, serves the decisions.
const progressTTL = 2 * time.Second

// skew is the allowance for the clocks of driftd and the API server when Machines created since a
// rollout began are counted.
const skew = 5 * time.Second

// pacer paces the changes that replace Machines across the fleet's Clusters
// (Options.MaxRollingClusters), wave by wave: the decision is diff.Pace's; the pacer keeps what it
// decides with — which Clusters want to roll, which ones driftd began to roll and when, and their
// progress as Cluster API reports it.
type pacer struct {
	max     int
	timeout time.Duration

	mu sync.Mutex
	// sealed: every object of the revision has been evaluated in this cycle, so every Cluster that
	// wants to roll is known and the waves' order can be kept.
	sealed bool
	// wants are the objects with a change that replaces Machines, by key: their Cluster
	// ("namespace/name") and how many Machines.
	wants map[diff.Key]want
	// began are the rollouts driftd let through and has not seen finished, by Cluster.
	began map[string]*rollout
	// seen is when a Cluster was first seen rolling (for one driftd did not begin).
	seen map[string]time.Time
	// progress is what each Cluster's rollout waits on, read at read.
	progress map[string]string
	read     time.Time
}

type want struct {
	cluster  string
	machines int
}

type rollout struct {
	at       time.Time
	machines map[diff.Key]int
}

func newPacer(max int, timeout time.Duration) *pacer {
	if max <= 0 {
		return nil
	}
	return &pacer{max: max, timeout: timeout, wants: map[diff.Key]want{}, began: map[string]*rollout{}, seen: map[string]time.Time{}, progress: map[string]string{}}
}

// unseal begins a cycle: the Clusters that want to roll are gathered again, and none begins to
// roll until all are known.
func (p *pacer) unseal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sealed = false
	clear(p.wants)
}

// seal ends a cycle's evaluation: every Cluster that wants to roll is known. The fleet's progress
// is read again while a change waits or a rollout driftd began has not finished, and counted.
func (p *pacer) seal(ctx context.Context, e *Engine, s *snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sealed = true
	if len(p.wants) > 0 || len(p.began) > 0 {
		p.refresh(ctx, e, s, e.opts.Now())
	} else {
		clear(p.progress) // nothing rolls that driftd waits for: a quiet fleet costs no request
	}
	p.count(e)
}

// drop says key no longer has a change that replaces Machines (it was applied, or it changed).
func (p *pacer) drop(key diff.Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.wants, key)
}

// abandon says key's change, let through, was not applied: it begins no rollout.
func (p *pacer) abandon(cluster string, key diff.Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.began[cluster]; r != nil {
		delete(r.machines, key)
		if len(r.machines) == 0 {
			delete(p.began, cluster)
			p.read = time.Time{}
		}
	}
}

// admit decides whether key's change, which replaces machines Machines of cluster
// ("namespace/name"), is applied now.
func (p *pacer) admit(ctx context.Context, e *Engine, s *snapshot, cluster string, key diff.Key, machines int) diff.Pacing {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wants[key] = want{cluster: cluster, machines: machines}
	now := e.opts.Now()
	if !p.sealed {
		return diff.Pacing{Reason: "rollout held: the revision is being compared across the fleet first, so that the waves keep their order"}
	}
	if now.Sub(p.read) > progressTTL {
		p.refresh(ctx, e, s, now)
	}
	wanting := map[string]bool{}
	for _, w := range p.wants {
		wanting[w.cluster] = true
	}
	var cs []diff.WaveCluster
	for _, c := range fleetClusters(s) {
		name := c.GetNamespace() + "/" + c.GetName()
		wave, err := diff.WaveOf(c)
		if err != nil {
			e.deps.Log.Info("Rollout wave label ignored", "cluster", name, "error", err.Error())
		}
		since := p.seen[name]
		if r := p.began[name]; r != nil {
			since = r.at
		}
		cs = append(cs, diff.WaveCluster{Cluster: name, Wave: wave, Wants: wanting[name], Rolling: p.progress[name], Since: since})
	}
	d := diff.Pace(cs, p.max, now, p.timeout)[cluster]
	if d.Admit {
		if r := p.began[cluster]; r != nil {
			r.machines[key] = machines
		} else {
			p.began[cluster] = &rollout{at: now, machines: map[diff.Key]int{key: machines}}
		}
		p.progress[cluster] = "its rollout begins"
	}
	p.count(e)
	return d
}

// count sets the metric of the Clusters rolling and waiting, as last read.
func (p *pacer) count(e *Engine) {
	rolling, waiting := 0, 0
	wanting := map[string]bool{}
	for _, w := range p.wants {
		wanting[w.cluster] = true
	}
	for _, progress := range p.progress {
		if progress != "" {
			rolling++
		}
	}
	for c := range wanting {
		if p.progress[c] == "" {
			waiting++
		}
	}
	e.ledger.Metrics().RolloutClusters.WithLabelValues("rolling").Set(float64(rolling))
	e.ledger.Metrics().RolloutClusters.WithLabelValues("waiting").Set(float64(waiting))
}

// refresh reads what every Cluster of the fleet's rollout waits on (diff.RolloutProgress): the
// Cluster, its control plane and MachineDeployments, and, for a rollout driftd began, its Machines.
// A rollout driftd began is forgotten once it waits on nothing.
func (p *pacer) refresh(ctx context.Context, e *Engine, s *snapshot, now time.Time) {
	p.progress = map[string]string{}
	p.read = now
	for _, c := range fleetClusters(s) {
		name := c.GetNamespace() + "/" + c.GetName()
		live, err := e.getLive(ctx, c)
		if err != nil {
			p.progress[name] = "its state cannot be read: " + err.Error()
			continue
		}
		if live == nil {
			continue // not created yet: nothing of it rolls
		}
		pools, err := e.pools(ctx, live)
		if err != nil {
			p.progress[name] = "its state cannot be read: " + err.Error()
			continue
		}
		var machines []*unstructured.Unstructured
		var since time.Time
		expect := 0
		if r := p.began[name]; r != nil {
			since = r.at.Add(-skew)
			for _, n := range r.machines {
				expect += n
			}
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(diff.GVKMachine.GroupVersion().WithKind("MachineList"))
			if err := e.deps.Client.List(ctx, list, client.InNamespace(live.GetNamespace()),
				client.MatchingLabels{clusterv1.ClusterNameLabel: live.GetName()}); err != nil {
				p.progress[name] = "its Machines cannot be read: " + err.Error()
				continue
			}
			for i := range list.Items {
				machines = append(machines, &list.Items[i])
			}
		}
		p.progress[name] = diff.RolloutProgress(live, pools, machines, since, expect)
		switch {
		case p.progress[name] == "":
			delete(p.began, name)
			delete(p.seen, name)
		case p.seen[name].IsZero():
			p.seen[name] = now
		}
	}
}

// pools are a live Cluster's control plane (its controlPlaneRef) and MachineDeployments.
func (e *Engine) pools(ctx context.Context, cluster *unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	if ref, ok, _ := unstructured.NestedMap(cluster.Object, "spec", "controlPlaneRef"); ok {
		group, _ := ref["apiGroup"].(string)
		kind, _ := ref["kind"].(string)
		name, _ := ref["name"].(string)
		if kind != "" && name != "" {
			cp, err := e.readRef(ctx, cluster.GetNamespace(), group, kind, name)
			if err != nil {
				return nil, err
			}
			if cp != nil {
				out = append(out, cp)
			}
		}
	}
	mds := &unstructured.UnstructuredList{}
	mds.SetGroupVersionKind(diff.GVKMachineDeployment.GroupVersion().WithKind("MachineDeploymentList"))
	if err := e.deps.Client.List(ctx, mds, client.InNamespace(cluster.GetNamespace()),
		client.MatchingLabels{clusterv1.ClusterNameLabel: cluster.GetName()}); err != nil {
		return nil, err
	}
	for i := range mds.Items {
		out = append(out, &mds.Items[i])
	}
	return out, nil
}

// fleetClusters are the Clusters of the snapshot, as Git has them.
func fleetClusters(s *snapshot) []*metav1.PartialObjectMetadata {
	var out []*metav1.PartialObjectMetadata
	for _, key := range s.order {
		if key.Kind == "Cluster" && key.Group == diff.GVKCluster.Group {
			out = append(out, s.desired[key].ref())
		}
	}
	return out
}

// paceCheck holds ev's change when it replaces Machines and its Cluster's turn has not come
// (Options.MaxRollingClusters).
func (e *Engine) paceCheck(ctx context.Context, s *snapshot, key diff.Key, d *desiredObject, ev *evaluation) {
	if e.pace == nil || ev.finding == nil {
		return
	}
	f := ev.finding
	if !f.Action.Corrects() || f.Rollout.Replaces() == 0 || f.Rollout.Deferred || ev.sit.Cluster == "" {
		e.pace.drop(key)
		return
	}
	p := e.pace.admit(ctx, e, s, key.Namespace+"/"+ev.sit.Cluster, key, f.Rollout.Replaces())
	if p.Admit {
		return
	}
	ev.sit.Paced = p.Reason
	ev.stuck = p.Stuck
	e.redecide(d, *ev)
}
