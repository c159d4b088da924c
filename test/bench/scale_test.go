package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// scaleRow is what BenchmarkScale measured at one fleet size.
type scaleRow struct {
	clusters, objects, live       int
	created                       time.Duration // from driftd's start on an empty management cluster to its first complete report
	createRequests                map[string]float64
	quietCycles                   float64
	quietWrites, quietDryRuns     float64 // per quiet cycle, from the API server's own counters
	quietLeases                   float64 // lease renewals per quiet cycle
	quietCycle                    time.Duration
	p50, p99, maxLatency          time.Duration // edit → corrected, seen by a watcher
	uncorrected                   int           // edits not corrected within editWait
	peakRSS, heap                 float64       // MiB
	restartRequests               float64
	restartWrites, restartDryRuns float64
	restart                       time.Duration // from the restarted driftd's start to its first complete report
	restartNewPod                 time.Duration // the same, started with an empty cache folder (a new pod)
	commitApplied                 time.Duration // from the new commit's push to its change in the cluster; 0: not within commitWait
}

// BenchmarkScale runs the driftd binary as it is deployed over a fleet of BENCH_CLUSTERS clusters
// (a comma-separated list runs each size in turn, each on a management cluster of its own, and
// prints them side by side), each cluster in a Namespace of its own (fleet.Namespaced, 11 objects),
// and measures from outside: creating the fleet from an empty management cluster; then, with the
// live objects Cluster API would have made beside Git's (a MachineSet, Machines, infrastructure
// machines and bootstrap configs for every pool), the quiet cycle (writes and dry runs counted by
// the API server itself, and its duration), edit → corrected latency while full cycles and the
// render of a new commit run, peak RSS and the heap, and a restart after one change: in the same
// pod (the render kept on the cache folder) and in a new one (an empty cache folder).
func BenchmarkScale(b *testing.B) {
	root, bin := buildDriftd(b)
	var rows []scaleRow
	for _, n := range fleetSizes() {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				rows = append(rows, benchScale(b, root, bin, n))
			}
		})
		// Written after each size: a long run cut short keeps what it measured.
		if err := os.WriteFile(filepath.Join(root, "bin", "bench", "scale.md"), []byte(scaleTable(rows)), 0o644); err != nil {
			b.Log(err)
		}
	}
	fmt.Println(scaleTable(rows))
}

const scaleInterval = 30 * time.Second

// scrapeEvery is how often the bench reads driftd's metrics while it waits for a cycle. A scrape
// costs driftd tens of milliseconds of CPU at these sizes: asked every 50 ms, as tests poll, it
// would take a good part of the core the benchmark measures.
const scrapeEvery = time.Second

func benchScale(b *testing.B, root, bin string, n int) scaleRow {
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	ctx := context.Background()
	files := fleet.Namespaced(n)
	repo := testenv.NewGitRepo(b, files)
	// driftd's own namespace, from config/ as installing it creates it; every Namespace of the
	// fleet comes from Git.
	const owner = "scale"
	own, err := os.ReadFile(filepath.Join(root, "config", "default", "namespace.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	system := &corev1.Namespace{}
	if err := yaml.UnmarshalStrict(own, system); err != nil {
		b.Fatal(err)
	}
	if err := env.Client.Create(ctx, system); err != nil {
		b.Fatal(err)
	}
	ns := system.Name
	row := scaleRow{clusters: n, objects: 11 * n}
	api := apiCounters{env: env}
	metrics := testenv.FreeAddr(b)
	// As config/ runs it (a leader elected, the render's budget, GOMEMLIMIT from the limit of 1Gi),
	// a full cycle every scaleInterval.
	// Served over git's smart HTTP, as a Git host serves it: the host packs what driftd clones.
	args := append(driver.New(env).Args(b, repo.ServeHTTP(b, "", ""), owner), "--namespace", ns, "--interval", scaleInterval.String(),
		"--leader-elect", "--render-max-memory", "384Mi",
		"--metrics-bind-address", metrics, "--health-probe-bind-address", "0", "--profiling")
	started := 0
	start := func(extra ...string) (*driver.Process, time.Time) {
		t0 := time.Now()
		// GOMEMLIMIT as the Deployment sets it, from its limit of 1Gi: driftd's alone. Set in the
		// bench's own environment it reached the API server started from it, whose heap is over
		// 1 GiB at 3,000 clusters (2 GiB): it then spent both cores collecting garbage.
		p := driver.SpawnEnv(b, []string{"GOMEMLIMIT=" + strconv.Itoa(1<<30)}, bin, append(append([]string{"run"}, args...), extra...)...)
		// Each driftd's whole log is kept beside the table, for what a figure alone does not say.
		started++
		log := filepath.Join(root, "bin", "bench", fmt.Sprintf("driftd-%d-%d.log", n, started))
		b.Cleanup(func() {
			if err := os.MkdirAll(filepath.Dir(log), 0o755); err == nil {
				_ = os.WriteFile(log, []byte(p.Out.String()), 0o644)
			}
		})
		return p, t0
	}
	completeCycles := func() float64 { return testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count") }
	waitCycles := func(p *driver.Process, want float64, within time.Duration) {
		testenv.EventuallyEvery(b, scrapeEvery, within, fmt.Sprintf("driftd's cycle %v", want), func() bool {
			if p.Exited() {
				b.Fatalf("driftd exited:\n%s", tail(p.Out.String()))
			}
			return completeCycles() >= want
		})
	}

	// firstReport waits for p's first complete cycle: a cycle cut off by --cycle-timeout (a large
	// fleet created from empty) leaves the rest to the next one.
	firstReport := func(p *driver.Process, within time.Duration) {
		testenv.EventuallyEvery(b, scrapeEvery, within, "driftd's first complete cycle", func() bool {
			if p.Exited() {
				b.Fatalf("driftd exited:\n%s", tail(p.Out.String()))
			}
			return testenv.MetricValue(metrics, "driftd_last_successful_cycle_timestamp_seconds") > 0
		})
	}

	// Created from empty.
	before := api.read(b)
	p, t0 := start()
	firstReport(p, 60*time.Minute)
	row.created = time.Since(t0)
	row.createRequests = api.read(b).minus(before).byVerb()
	clusters := &unstructured.UnstructuredList{}
	clusters.SetGroupVersionKind(diff.GVKCluster.GroupVersion().WithKind("ClusterList"))
	if err := env.Client.List(ctx, clusters); err != nil || len(clusters.Items) != n {
		b.Fatalf("after the first cycle: %d Clusters (%v), want %d\n%s", len(clusters.Items), err, n, tail(p.Out.String()))
	}

	// What Cluster API would have made, then a cycle that has seen it.
	row.live = provisionFleet(b, env, n)
	waitCycles(p, completeCycles()+1, 10*time.Minute)

	// Quiet cycles.
	cycles0, sum0 := completeCycles(), testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_sum")
	quiet0 := api.read(b)
	cpu := make(chan string, 1)
	go func() { // where a quiet cycle's time goes, saved beside the heap profile
		top, err := saveProfile(root, metrics, "profile?seconds=45", fmt.Sprintf("cpu-quiet-%d.pprof", n), "-cum")
		if err != nil {
			top = err.Error()
		}
		cpu <- top
	}()
	waitCycles(p, cycles0+3, 10*time.Minute)
	quiet := api.read(b).minus(quiet0)
	b.Logf("driftd's CPU over 45 s of quiet cycles:\n%s", <-cpu)
	row.quietCycles = completeCycles() - cycles0
	row.quietWrites, row.quietDryRuns = quiet.writes()/row.quietCycles, quiet.dryRuns()/row.quietCycles
	row.quietLeases = quiet.leaseRenewals() / row.quietCycles
	row.quietCycle = time.Duration((testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_sum") - sum0) / row.quietCycles * float64(time.Second))

	// Edit → corrected, while full cycles and the render of a new commit run.
	var committed time.Time
	lat, uncorrected := editLatencies(b, env, n, func() {
		committed = time.Now()
		repo.Commit(b, "label a cluster", map[string]string{
			fleet.Dir + "/c00000/cluster.yaml": strings.Replace(files[fleet.Dir+"/c00000/cluster.yaml"], "name: c00000\n", "name: c00000\n  labels:\n    tier: gold\n", 1),
		})
	})
	row.p50, row.p99, row.maxLatency = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	row.uncorrected = uncorrected
	if uncorrected > 0 {
		// Where driftd's goroutines wait, for what a late correction alone does not say.
		top, err := saveProfile(root, metrics, "goroutine", fmt.Sprintf("goroutines-%d.pprof", n), "-cum")
		if err != nil {
			top = err.Error()
		}
		b.Logf("%d edits not corrected within %s; driftd's goroutines:\n%s", uncorrected, editWait, top)
	}
	// The new commit, rendered in the background beside the serving daemon, reaches the cluster.
	row.commitApplied = commitApplied(ctx, env, committed)
	row.peakRSS = float64(p.PeakRSS()) / (1 << 20)
	row.heap = heapInUse(b, root, metrics, n)
	// A cycle after the edits, whose end stores what driftd found equal to Git: the restart
	// measures one change made while driftd was down, not the edits corrected just before.
	waitCycles(p, completeCycles()+1, 10*time.Minute)

	// A restart after one change made while driftd was down.
	if !p.Stop(time.Minute) {
		b.Fatal("driftd did not stop within a minute of SIGTERM")
	}
	driver.New(env).Scale(b, "kubectl-edit", "c00001", "c00001-md-0", 7)
	before = api.read(b)
	p, t0 = start()
	firstReport(p, 10*time.Minute)
	row.restart = time.Since(t0)
	restart := api.read(b).minus(before)
	row.restartRequests, row.restartWrites, row.restartDryRuns = restart.total(), restart.writes(), restart.dryRuns()
	if r := driver.New(env).Replicas("c00001", "c00001-md-0"); r != 3 {
		b.Errorf("the change made while driftd was down is not corrected: replicas %d", r)
	}

	// The same in a new pod (moved, or started anew; a standby that takes over has kept the
	// clone and the render of the head already): its cache folder is empty, the commit is cloned
	// and rendered again.
	if !p.Stop(time.Minute) {
		b.Fatal("driftd did not stop within a minute of SIGTERM")
	}
	driver.New(env).Scale(b, "kubectl-edit", "c00001", "c00001-md-0", 8)
	p, t0 = start("--git-cache-dir", b.TempDir())
	firstReport(p, 10*time.Minute)
	row.restartNewPod = time.Since(t0)
	if r := driver.New(env).Replicas("c00001", "c00001-md-0"); r != 3 {
		b.Errorf("the change made while driftd was down is not corrected in a new pod: replicas %d", r)
	}
	p.Stop(time.Minute)

	b.ReportMetric(row.created.Seconds(), "created-s")
	b.ReportMetric(float64(row.objects)/row.created.Seconds(), "created-objects/s")
	b.ReportMetric(row.quietWrites+row.quietDryRuns, "quiet-writes+dryruns/cycle")
	b.ReportMetric(row.quietLeases, "quiet-lease-renewals/cycle")
	b.ReportMetric(row.quietCycle.Seconds(), "quiet-cycle-s")
	b.ReportMetric(ms(row.p50), "corrected-p50-ms")
	b.ReportMetric(float64(row.uncorrected), "edits-not-corrected")
	b.ReportMetric(ms(row.p99), "corrected-p99-ms")
	b.ReportMetric(row.peakRSS, "peak-RSS-MiB")
	b.ReportMetric(row.heap, "heap-MiB")
	b.ReportMetric(row.commitApplied.Seconds(), "commit-applied-s")
	b.ReportMetric(row.restartRequests, "restart-requests")
	b.ReportMetric(row.restart.Seconds(), "restart-s")
	b.ReportMetric(row.restartNewPod.Seconds(), "restart-new-pod-s")
	return row
}

// editLatencies scales 100 random MachineDeployments by another field manager, one every 300 ms
// (so full cycles run meanwhile), calling during halfway (a new commit), and returns for each the
// time until a watcher sees driftd's correction.
func editLatencies(b *testing.B, env *testenv.Env, n int, during func()) ([]time.Duration, int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(env.Config)
	mds := dyn.Resource(diff.GVKMachineDeployment.GroupVersion().WithResource("machinedeployments"))
	// From the version of a list, through a watch that starts again where it broke: a plain watch
	// of 10,000 MachineDeployments starts with an event for each, and a broken one saw no edit.
	list, err := mds.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), resourceWatcher{mds})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	edited := map[string]time.Time{} // namespace → when its MachineDeployment was scaled
	var lat []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			if r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); r != 3 {
				continue
			}
			mu.Lock()
			if t, ok := edited[u.GetNamespace()]; ok {
				lat = append(lat, time.Since(t))
				delete(edited, u.GetNamespace())
			}
			mu.Unlock()
		}
	}()
	const edits = 100
	pace := time.NewTicker(300 * time.Millisecond) // an edit every 300 ms: a rate, not a wait
	defer pace.Stop()
	for i := range edits {
		if i == edits/2 {
			during()
		}
		c := fmt.Sprintf("c%05d", rand.IntN(n-2)+2) // c00000 and c00001 are the commit's and the restart's
		mu.Lock()
		if _, busy := edited[c]; busy {
			mu.Unlock()
			continue
		}
		edited[c] = time.Now()
		mu.Unlock()
		driver.New(env).Scale(b, "kubectl-edit", c, c+"-md-0", int64(10+i))
		<-pace.C
	}
	// An edit slow to be corrected, or not corrected at all, is a figure, not a failure: the
	// row says how many were not corrected within editWait.
	poll(editWait, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(edited) == 0
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return lat, len(edited)
}

// editWait is how long the bench waits for the last edits to be corrected.
const editWait = 5 * time.Minute

// commitWait is how long the bench waits for the new commit: its render in the background may
// take three times the default --render-timeout on the clock, then a cycle.
const commitWait = 3*render.DefaultTimeout + 5*time.Minute

// commitApplied returns how long after committed the commit's label reached Cluster c00000, or 0
// when it did not within commitWait.
func commitApplied(ctx context.Context, env *testenv.Env, committed time.Time) time.Duration {
	applied := poll(commitWait-time.Since(committed), func() bool {
		c, err := driver.New(env).Lookup(ctx, diff.GVKCluster, "c00000", "c00000")
		return err == nil && c != nil && c.GetLabels()["tier"] == "gold"
	})
	if !applied {
		return 0
	}
	return time.Since(committed)
}

// poll checks cond every scrapeEvery until it holds (true) or timeout passed (false): for a
// figure, where testenv.Eventually would fail the run.
func poll(timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, scrapeEvery, true, func(context.Context) (bool, error) { return cond(), nil }) == nil
}

// provisionFleet creates, in every cluster's Namespace, what Cluster API makes for its pools: the
// MachineDeployment's MachineSet and, for each of the 3 control plane and 3 worker Machines, the
// Machine, its AWSMachine and its KubeadmConfig (19 objects a cluster). It returns how many.
func provisionFleet(tb testing.TB, env *testenv.Env, n int) int {
	tb.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	var count atomic.Int64
	for range 16 {
		wg.Go(func() {
			for i := range work {
				for _, o := range liveObjects(fmt.Sprintf("c%05d", i)) {
					if err := env.Client.Create(context.Background(), o); err != nil {
						firstErr.CompareAndSwap(nil, fmt.Errorf("%s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err))
						continue
					}
					count.Add(1)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		tb.Fatalf("creating the live objects: %v", err)
	}
	return int(count.Load())
}

// liveObjects are the objects Cluster API would have made for cluster c (its Namespace is c).
func liveObjects(c string) []*unstructured.Unstructured {
	obj := func(apiVersion, kind, name string, labels map[string]string, spec map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
		u.SetNamespace(c)
		u.SetName(name)
		u.SetLabels(labels)
		return u
	}
	ms := c + "-md-0-7f9c4"
	msLabels := map[string]string{"cluster.x-k8s.io/cluster-name": c, "cluster.x-k8s.io/deployment-name": c + "-md-0"}
	out := []*unstructured.Unstructured{obj("cluster.x-k8s.io/v1beta2", "MachineSet", ms, msLabels, map[string]any{
		"clusterName": c, "replicas": int64(3),
		"selector": map[string]any{"matchLabels": map[string]any{"cluster.x-k8s.io/set-name": ms}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"cluster.x-k8s.io/set-name": ms}},
			"spec": map[string]any{"clusterName": c, "version": "v1.31.4",
				"bootstrap":         map[string]any{"configRef": map[string]any{"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfigTemplate", "name": c + "-md-0"}},
				"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachineTemplate", "name": c + "-md-0"}},
		},
	})}
	for i, name := range []string{c + "-cp-x7k2p", c + "-cp-m4q9d", c + "-cp-t2v8w", ms + "-a1b2c", ms + "-d3e4f", ms + "-g5h6j"} {
		labels := map[string]string{"cluster.x-k8s.io/cluster-name": c}
		if i < 3 {
			labels["cluster.x-k8s.io/control-plane"] = ""
			labels["cluster.x-k8s.io/control-plane-name"] = c + "-cp"
		} else {
			labels["cluster.x-k8s.io/deployment-name"] = c + "-md-0"
			labels["cluster.x-k8s.io/set-name"] = ms
		}
		providerID := fmt.Sprintf("aws:///eu-west-1a/i-0%015x", rand.Uint64()>>4)
		out = append(out,
			obj("infrastructure.cluster.x-k8s.io/v1beta2", "AWSMachine", name, labels, map[string]any{
				"instanceType": "m6i.large", "providerID": providerID, "ami": map[string]any{"id": "ami-0abcdef1234567890"},
				"sshKeyName": "platform", "iamInstanceProfile": "nodes.cluster-api-provider-aws.sigs.k8s.io"}),
			obj("bootstrap.cluster.x-k8s.io/v1beta2", "KubeadmConfig", name, labels, map[string]any{
				"joinConfiguration": map[string]any{"nodeRegistration": map[string]any{"name": "{{ ds.meta_data.local_hostname }}",
					"kubeletExtraArgs": []any{map[string]any{"name": "cloud-provider", "value": "external"}}}}}),
			obj("cluster.x-k8s.io/v1beta2", "Machine", name, labels, map[string]any{
				"clusterName": c, "version": "v1.31.4", "providerID": providerID,
				"bootstrap":         map[string]any{"configRef": map[string]any{"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfig", "name": name}, "dataSecretName": name},
				"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "AWSMachine", "name": name}}),
		)
	}
	return out
}

// heapInUse saves driftd's heap profile (heapProfile) and returns its bytes in use, in MiB: the
// total go tool pprof -top reports.
func heapInUse(b *testing.B, root, addr string, clusters int) float64 {
	top := heapProfile(b, root, addr, clusters)
	m := regexp.MustCompile(`of ([0-9.]+)([kMG]?B) total`).FindStringSubmatch(top)
	if m == nil {
		b.Fatalf("no total in go tool pprof's output:\n%s", top)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v * map[string]float64{"B": 1.0 / (1 << 20), "kB": 1.0 / (1 << 10), "MB": 1, "GB": 1 << 10}[m[2]]
}

// apiCounters reads the API server's own request counters (apiserver_request_total).
type apiCounters struct{ env *testenv.Env }

// requests are apiserver_request_total's series: verb, dry run, resource → count.
type requests map[[3]string]float64

func (a apiCounters) read(tb testing.TB) requests {
	tb.Helper()
	raw, err := kubernetes.NewForConfigOrDie(a.env.Config).RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		tb.Fatalf("reading the API server's metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		tb.Fatalf("parsing the API server's metrics: %v", err)
	}
	out := requests{}
	if f, ok := families["apiserver_request_total"]; ok {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["resource"] == "" {
				continue // /metrics, /healthz: the bench's own reads
			}
			out[[3]string{l["verb"], l["dry_run"], l["resource"]}] += m.GetCounter().GetValue()
		}
	}
	return out
}

func (r requests) minus(before requests) requests {
	out := requests{}
	for k, v := range r {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func (r requests) total() (n float64) {
	for _, v := range r {
		n += v
	}
	return n
}

// writes are the requests that change something: dry runs aside, and the leader's renewals of
// its lease (every 2 s, whatever the fleet), counted by leaseRenewals.
func (r requests) writes() (n float64) {
	for k, v := range r {
		if k[1] == "" && k[0] != "GET" && k[0] != "LIST" && k[0] != "WATCH" && k[2] != "leases" {
			n += v
		}
	}
	return n
}

func (r requests) leaseRenewals() (n float64) {
	for k, v := range r {
		if k[2] == "leases" && k[0] == "PUT" {
			n += v
		}
	}
	return n
}

func (r requests) dryRuns() (n float64) {
	for k, v := range r {
		if k[1] != "" {
			n += v
		}
	}
	return n
}

// byVerb sums by verb, dry runs as "dry-run", Events apart as "event".
func (r requests) byVerb() map[string]float64 {
	out := map[string]float64{}
	for k, v := range r {
		switch {
		case k[1] != "":
			out["dry-run"] += v
		case k[2] == "events":
			out["event"] += v
		default:
			out[k[0]] += v
		}
	}
	return out
}

func scaleTable(rows []scaleRow) string {
	var s strings.Builder
	s.WriteString("| clusters (objects + live) | created from empty | requests while creating | quiet cycle: writes / dry runs (lease renewals), duration | edit → corrected p50 / p99 / max | peak RSS (per cluster) | heap in use | new commit applied | restart after 1 change: requests (writes / dry runs), first report | first report of a restart in a new pod (no cache) |\n")
	s.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	// By size, whatever order they ran in (a long run may take its largest first).
	rows = slices.SortedFunc(slices.Values(rows), func(a, b scaleRow) int { return a.clusters - b.clusters })
	for _, r := range rows {
		var verbs []string
		for _, v := range []string{"dry-run", "APPLY", "PATCH", "POST", "PUT", "GET", "LIST", "WATCH", "event"} {
			if n := r.createRequests[v]; n > 0 {
				verbs = append(verbs, fmt.Sprintf("%s %.0f", v, n))
			}
		}
		notCorrected := ""
		if r.uncorrected > 0 {
			notCorrected = fmt.Sprintf(" (%d of the edits not corrected within %s)", r.uncorrected, editWait)
		}
		applied := fmt.Sprintf("%.0f s", r.commitApplied.Seconds())
		if r.commitApplied == 0 {
			applied = "not within " + commitWait.String()
		}
		fmt.Fprintf(&s, "| %d (%d + %d) | %.0f s (%.0f objects/s) | %s | %.0f / %.0f (%.0f), %.2f s | %.2f / %.2f / %.2f s%s | %.0f MiB (%.3f) | %.0f MiB | %s | %.0f (%.0f / %.0f), %.1f s | %.1f s |\n",
			r.clusters, r.objects, r.live, r.created.Seconds(), float64(r.objects)/r.created.Seconds(), strings.Join(verbs, ", "),
			r.quietWrites, r.quietDryRuns, r.quietLeases, r.quietCycle.Seconds(), r.p50.Seconds(), r.p99.Seconds(), r.maxLatency.Seconds(), notCorrected,
			r.peakRSS, r.peakRSS/float64(r.clusters), r.heap, applied, r.restartRequests, r.restartWrites, r.restartDryRuns, r.restart.Seconds(), r.restartNewPod.Seconds())
	}
	return s.String()
}

func tail(s string) string {
	if len(s) > 8000 {
		return "…" + s[len(s)-8000:]
	}
	return s
}

// resourceWatcher watches one resource for a RetryWatcher.
type resourceWatcher struct {
	r dynamic.NamespaceableResourceInterface
}

func (w resourceWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return w.r.Watch(ctx, o)
}
