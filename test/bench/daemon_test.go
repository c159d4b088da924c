package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
)

// runArgs are the flags of the benchmarks' `driftd run` (its namespace aside): one cycle an hour.
func runArgs(tb testing.TB, f *benchFleet) []string {
	return append(drv.Args(tb, f.repo.Dir, f.owner), "--interval", "1h")
}

// waitForFirstCycle waits until driftd wrote its status, i.e. finished its first cycle, failing
// with driftd's output if it exits (exited returns why) or takes more than 10 minutes.
func waitForFirstCycle(tb testing.TB, f *benchFleet, exited func() error, out *testenv.SyncBuffer) {
	tb.Helper()
	testenv.Eventually(tb, 10*time.Minute, "driftd's first cycle", func() bool {
		if err := exited(); err != nil {
			tb.Fatalf("driftd exited (%v) before its first cycle:\n%s", err, out.String())
		}
		return env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: report.StatusName(f.owner)}, &corev1.ConfigMap{}) == nil
	})
}

// benchDetectionLatency measures the time from an out-of-band patch of a MachineDeployment by
// another field manager to driftd's DriftDetected Event on it: "detected" is the Event's own time
// (when driftd decided), "visible" is when a watcher of Events sees it. 50 edits, p50 and p95.
func benchDetectionLatency(b *testing.B, f *benchFleet) {
	_ = env.Client.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: report.StatusName(f.owner)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := drv.Start(b, f.ns, runArgs(b, f)...)
	defer d.Stop(time.Minute)
	waitForFirstCycle(b, f, func() error {
		if code, ok := d.Exited(); ok {
			return fmt.Errorf("exit %d", code)
		}
		return nil
	}, d.Out)
	// The watches start right after the first cycle: an unmeasured edit, corrected, shows they run.
	drv.Scale(b, "kubectl-edit", f.ns, "c0000-md-0", 99)
	testenv.Eventually(b, time.Minute, "the warm-up edit corrected", func() bool { return drv.Replicas(f.ns, "c0000-md-0") == 3 })

	clientset := kubernetes.NewForConfigOrDie(env.Config)
	w, err := clientset.EventsV1().Events(f.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	const edits = 50
	var detected, visible []time.Duration
	b.ResetTimer()
	for i := range edits {
		name := fmt.Sprintf("c%04d-md-0", i%(len(f.objects)/8))
		want := fmt.Sprintf("live %d", 10+i)
		t0 := time.Now()
		drv.Scale(b, "kubectl-edit", f.ns, name, int64(10+i))
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case ev := <-w.ResultChan():
				e, ok := ev.Object.(*eventsv1.Event)
				if ok && e.Reason == "DriftDetected" && e.Regarding.Name == name && strings.Contains(e.Note, want) {
					visible = append(visible, time.Since(t0))
					detected = append(detected, e.EventTime.Sub(t0))
					break wait
				}
			case <-timeout:
				b.Fatalf("no DriftDetected for %s within 30s", name)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(detected, 50)), "detected-p50-ms")
	b.ReportMetric(ms(percentile(detected, 95)), "detected-p95-ms")
	b.ReportMetric(ms(percentile(visible, 50)), "visible-p50-ms")
	b.ReportMetric(ms(percentile(visible, 95)), "visible-p95-ms")
}

// benchRunPeakRSS runs the driftd binary on the fleet until it has finished two cycles and
// reports its peak resident memory (VmHWM). Its heap then (in use, after a collection) is written
// to bin/bench/heap-<clusters>.pprof and its largest holders logged, so that where the memory goes
// is measured, not guessed.
func benchRunPeakRSS(b *testing.B, f *benchFleet) {
	root, bin := buildDriftd(b)
	var peak float64
	for range b.N {
		_ = env.Client.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: report.StatusName(f.owner)}})
		metrics := testenv.FreeAddr(b)
		args := append([]string{"run", "--namespace", f.ns, "--health-probe-bind-address", "0", "--profiling"}, append(runArgs(b, f), "--interval", "5s", "--metrics-bind-address", metrics)...)
		cmd := exec.Command(bin, args...)
		var out testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		waitForFirstCycle(b, f, func() error {
			select {
			case err := <-exited:
				return fmt.Errorf("%v", err)
			default:
				return nil
			}
		}, &out)
		testenv.Eventually(b, 5*time.Minute, "a second, unchanged cycle", func() bool {
			return testenv.MetricValue(metrics, "driftd_cycle_duration_seconds_count") >= 2
		})
		peak = max(peak, vmHWM(b, cmd.Process.Pid))
		b.Logf("driftd's heap in use after two cycles:\n%s", heapProfile(b, root, metrics, len(f.objects)/8))
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
	}
	b.ReportMetric(peak, "peak-RSS-MiB")
}

// buildDriftd builds the driftd binary into a temporary folder and returns the module root and
// the binary's path.
func buildDriftd(b *testing.B) (root, bin string) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin = filepath.Join(b.TempDir(), "driftd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/driftd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building driftd: %v\n%s", err, out)
	}
	return root, bin
}

// heapProfile saves the heap profile driftd serves on addr to bin/bench/heap-<clusters>.pprof
// and returns the file's name and go tool pprof -top's summary of the bytes in use.
func heapProfile(b *testing.B, root, addr string, clusters int) string {
	top, err := saveProfile(root, addr, "heap?gc=1", fmt.Sprintf("heap-%d.pprof", clusters), "-sample_index=inuse_space")
	if err != nil {
		b.Fatal(err)
	}
	return top
}

// saveProfile saves the profile driftd serves at /debug/pprof/<query> on addr to bin/bench/<name>
// and returns the file's name and go tool pprof -top's summary of it. It calls no b method, so
// that a profile can be taken while the benchmark goes on.
func saveProfile(root, addr, query, name string, pprofArgs ...string) (string, error) {
	resp, err := testenv.HTTP.Get("http://" + addr + "/debug/pprof/" + query)
	if err != nil {
		return "", fmt.Errorf("reading driftd's profile %s: %w", query, err)
	}
	defer resp.Body.Close()
	dir := filepath.Join(root, "bin", "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	file := filepath.Join(dir, name)
	out, err := os.Create(file)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return "", errors.Join(err, out.Close())
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	top, err := exec.Command("go", append(append([]string{"tool", "pprof", "-top", "-nodecount=25"}, pprofArgs...), file)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w\n%s", err, top)
	}
	return file + "\n" + string(top), nil
}

// vmHWM is a process's peak resident set size in MiB.
func vmHWM(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	tb.Fatal("no VmHWM in /proc status")
	return 0
}

// percentile is the p-th percentile of ds; 0 when there is none (the row says how many edits
// were not corrected).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
