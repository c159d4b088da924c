package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
	"github.com/driftd/driftd/internal/testenv/image"
)

// runOnce runs the image's `driftd run --once` with args and returns its exit code.
func runOnce(t *testing.T, args ...string) int {
	t.Helper()
	once := append([]string{"run", "--once"}, args[1:]...)
	p := driver.Spawn(t, image.Binary(t), once...)
	code := p.Wait(2 * time.Minute)
	if code < 0 {
		t.Fatalf("run --once did not end within 2 minutes:\n%s", p.Out.String())
	}
	return code
}

func workers(ns string, replicas string) map[string]string {
	w := fleet.AWS(ns)[fleet.Dir+"/workers.yaml"]
	return map[string]string{fleet.Dir + "/workers.yaml": strings.Replace(w, "  replicas: 3\n", "  replicas: "+replicas+"\n", 1)}
}

// TestAForcePushIsFollowedWithoutSignatures: the branch is rewritten (a commit driftd applied is
// no longer in its history). Without --verify-signatures Git is the truth as it is now: driftd
// follows the new head from its existing cache, writing the one object that differs and nothing
// else. (With signatures a rewrite to an older commit is refused: TestASignedRollbackIsRefused.)
func TestAForcePushIsFollowedWithoutSignatures(t *testing.T) {
	ns := "fault-force-push"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	first := repo.Commit(t, "four workers", workers(ns, "4"))
	args := daemonArgs(t, ns, repo, proxy)
	if code := runOnce(t, args...); code != 0 || drv.Replicas(ns, "prod-md-0") != 4 {
		t.Fatalf("first run: exit %d, replicas %d", code, drv.Replicas(ns, "prod-md-0"))
	}
	log, err := gitLog(repo.Dir, first)
	if err != nil {
		t.Fatal(err)
	}
	repo.ResetBranch(t, log[1]) // the commit before "four workers"
	repo.Commit(t, "five workers, on a rewritten branch", workers(ns, "5"))
	proxy.Reset()
	if code := runOnce(t, args...); code != 0 {
		t.Fatalf("run --once after the force-push: exit %d", code)
	}
	if got := drv.Replicas(ns, "prod-md-0"); got != 5 {
		t.Errorf("replicas %d after the force-push, want the new head's 5", got)
	}
	t.Logf("writes after the force-push:\n  %s", strings.Join(writes(proxy), "\n  "))
	if bad := unintended(proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}

// TestTheBranchDeleted: the branch driftd follows is deleted on the Git server. driftd says so,
// exits 1 from run --once, and writes nothing to the fleet; the branch back, it goes on.
func TestTheBranchDeleted(t *testing.T) {
	ns := "fault-branch-deleted"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	proxy := env.NewAPIProxy(t)
	args := daemonArgs(t, ns, repo, proxy)
	if code := runOnce(t, args...); code != 0 {
		t.Fatalf("first run: exit %d", code)
	}
	head := repo.Commit(t, "four workers", workers(ns, "4"))
	r, err := git.PlainOpen(repo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Storer.RemoveReference(plumbing.NewBranchReferenceName("main")); err != nil {
		t.Fatal(err)
	}
	proxy.Reset()
	if code := runOnce(t, args...); code != 1 {
		t.Errorf("run --once without its branch: exit %d, want 1", code)
	}
	if got := drv.Replicas(ns, "prod-md-0"); got != 3 {
		t.Errorf("replicas %d without the branch, want 3 as last applied", got)
	}
	if bad := unintended(proxy, bookkeeping(system(ns))); len(bad) > 0 {
		t.Errorf("writes without the branch: %v", bad)
	}
	repo.ResetBranch(t, head)
	if code := runOnce(t, args...); code != 0 || drv.Replicas(ns, "prod-md-0") != 4 {
		t.Errorf("with the branch back: exit %d, replicas %d, want 0 and 4", code, drv.Replicas(ns, "prod-md-0"))
	}
}

// gitLog lists the commits from commit back to the first.
func gitLog(dir, commit string) ([]string, error) {
	r, err := git.PlainOpen(dir)
	if err != nil {
		return nil, err
	}
	iter, err := r.Log(&git.LogOptions{From: plumbing.NewHash(commit)})
	if err != nil {
		return nil, err
	}
	var out []string
	err = iter.ForEach(func(c *object.Commit) error { out = append(out, c.Hash.String()); return nil })
	return out, err
}

// TestAPackCutOffOrStalledMidFetch: the Git server's answer to a fetch breaks off a few bytes into
// the pack, fetch after fetch; then, with the cut mended and another commit, it stalls mid-pack
// and driftd is killed with SIGKILL during that fetch. Nothing is applied from a broken pack, the
// same process fetches the commit once packs come whole, and a driftd started on the killed one's
// cache directory fetches and applies the head: the cache is not corrupted.
func TestAPackCutOffOrStalledMidFetch(t *testing.T) {
	ns := "fault-pack"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	url, pack := repo.ServeHTTPPackFaults(t)
	proxy := env.NewAPIProxy(t)
	args := daemonArgs(t, ns, repo, proxy, "--repo", url, "--git-cache-dir", t.TempDir(), "--git-timeout", "20s",
		"--interval", "2s", "--health-probe-bind-address", "0")
	p := spawnImage(t, args...)
	testenv.Eventually(t, 90*time.Second, "the first complete cycle", func() bool { return cycleDone(p) })

	proxy.Reset()
	pack.Cut()
	repo.Commit(t, "four workers", workers(ns, "4"))
	testenv.Eventually(t, 60*time.Second, "two fetches cut off mid-pack", func() bool { return pack.Hits() >= 2 })
	if got := drv.Replicas(ns, "prod-md-0"); got != 3 {
		t.Errorf("replicas %d from a pack cut off, want 3", got)
	}
	pack.Clear()
	testenv.Eventually(t, 60*time.Second, "the commit fetched whole and applied", func() bool { return drv.Replicas(ns, "prod-md-0") == 4 })

	pack.Stall()
	repo.Commit(t, "five workers", workers(ns, "5"))
	testenv.Eventually(t, 30*time.Second, "a fetch stalled mid-pack", func() bool { return pack.Waiting() > 0 })
	p.Kill()
	pack.Clear()
	if got := drv.Replicas(ns, "prod-md-0"); got != 4 {
		t.Errorf("replicas %d from a stalled pack, want 4", got)
	}
	if code := runOnce(t, args...); code != 0 {
		t.Errorf("run --once on the killed driftd's cache: exit %d, want 0", code)
	}
	if got := drv.Replicas(ns, "prod-md-0"); got != 5 {
		t.Errorf("replicas %d after a fetch on the same cache, want the head's 5", got)
	}
	t.Logf("%d packs broken; writes:\n  %s", pack.Hits(), strings.Join(writes(proxy), "\n  "))
	if bad := unintended(proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}
