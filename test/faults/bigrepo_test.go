package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestARepositoryOf50000Files: the fleet lives in a monorepo of 50,000 files (vendored charts,
// generated dumps, docs) beside its few under --path. driftd clones and checks out all of it and
// renders only --path: run --once creates the fleet and writes nothing else, and its time and its
// peak memory (its render sandbox included) stay bounded; a second run, on the same cache, fetches
// nothing new.
func TestARepositoryOf50000Files(t *testing.T) {
	ns := "fault-monorepo"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	const files = 50_000
	{
		proxy := env.NewAPIProxy(t)
		p := spawnImage(t, append([]string{"run", "--once"}, daemonArgs(t, ns, repo, proxy)[1:]...)...)
		p.Wait(time.Minute)
		t.Logf("baseline RSS %d MiB", p.PeakRSS()>>20)
	}
	for i := range files {
		dir := filepath.Join(repo.Dir, "vendor", fmt.Sprintf("chart-%03d", i/500))
		if i%500 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		body := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vendored-%d\ndata:\n  n: %q\n", i, fmt.Sprint(i))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%05d.yaml", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=Fleet", "-c", "user.email=fleet@example.com", "commit", "-qm", "vendor 50,000 files"}} {
		if out, err := exec.Command("git", append([]string{"-C", repo.Dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	proxy := env.NewAPIProxy(t)
	args := daemonArgs(t, ns, repo, proxy)
	for _, run := range []string{"first run (clone)", "second run (same cache)"} {
		start := time.Now()
		p := spawnImage(t, append([]string{"run", "--once"}, args[1:]...)...)
		code := p.Wait(5 * time.Minute)
		if code < 0 {
			t.Fatalf("%s: run --once did not end within 5 minutes", run)
		}
		rss := p.PeakRSS()
		t.Logf("%s over %d files: exit %d in %s, peak RSS %d MiB", run, files, code, time.Since(start).Round(100*time.Millisecond), rss>>20)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", run, code, p.Out.String())
		}
		if rss > 512<<20 {
			t.Errorf("%s: peak RSS %d MiB, want under 512 MiB (the render's own limit)", run, rss>>20)
		}
	}
	if got := drv.Replicas(ns, "prod-md-0"); got != 3 {
		t.Errorf("replicas %d, want the fleet's 3", got)
	}
	fleetOrOwn := func(r testenv.Request) bool {
		return strings.Contains(r.Path, "/namespaces/"+ns+"/") || r.Path == "/api/v1/namespaces/"+ns || r.Path == "/api/v1/namespaces" || bookkeeping(system(ns))(r)
	}
	if bad := unintended(proxy, fleetOrOwn); len(bad) > 0 {
		t.Errorf("writes outside the fleet: %v", bad)
	}
	for _, r := range proxy.Requests(testenv.Writes) {
		if strings.Contains(r.Name, "vendored") {
			t.Errorf("a file outside --path was applied: %s %s", r.Method, r.Path)
		}
	}
}
