package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestRunServesProbesAndMetricsAndReleasesItsLease(t *testing.T) {
	ns := "endpoints"
	system := drv.Namespace(t, "endpoints-system") // driftd's own namespace, holding its lease
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	probes, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testenv.SyncBuffer
	done := make(chan int, 1)
	args := append([]string{"run", "--namespace", system, "--leader-elect", "--interval", "1h",
		"--health-probe-bind-address", probes, "--metrics-bind-address", metrics}, drv.Args(t, repo.Dir, "endpoints")...)
	go func() { done <- cli.Execute(ctx, args, &out, &out) }()

	testenv.Eventually(t, 30*time.Second, "the first cycle", func() bool { return drv.Watching(system) })
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := httpGet(t, "http://"+probes+path); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, code)
		}
	}
	// The status ConfigMap is written as the cycle ends, its metrics a moment later: wait for them.
	want := []string{"driftd_cycle_duration_seconds", "driftd_source_revision_info{owner=\"endpoints\",revision=\"main@sha1:", "driftd_corrections_total{owner=\"endpoints\",result=\"succeeded\"}", "driftd_last_cycle_timestamp_seconds"}
	var missing []string
	testenv.Eventually(t, 30*time.Second, "the first cycle's metrics", func() bool {
		_, body := httpGet(t, "http://"+metrics+"/metrics")
		missing = nil
		for _, metric := range want {
			if !strings.Contains(body, metric) {
				missing = append(missing, metric)
			}
		}
		return len(missing) == 0
	})
	lease := &coordinationv1.Lease{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: system, Name: "driftd-endpoints"}, lease); err != nil {
		t.Fatalf("no leader election lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Error("the lease has no holder while driftd runs")
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("driftd run exited %d on shutdown\n%s", code, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("driftd run did not shut down within 30s")
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: system, Name: "driftd-endpoints"}, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
		t.Errorf("the lease is still held by %q after shutdown", *lease.Spec.HolderIdentity)
	}
}

func httpGet(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := testenv.HTTP.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
