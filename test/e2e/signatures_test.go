package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// TestOnlySignedCommitsAreApplied: with --verify-signatures, a head commit signed by a key of the
// keyring is applied; one signed by another key, or not signed, is refused with a
// SourceVerificationFailed Event, nothing is written, and the last verified revision stays.
func TestOnlySignedCommitsAreApplied(t *testing.T) {
	trusted, trustedPub := testenv.NewSigningKey(t, "Fleet Maintainer")
	stranger, _ := testenv.NewSigningKey(t, "Someone Else")
	keyring := filepath.Join(t.TempDir(), "trusted.asc")
	if err := os.WriteFile(keyring, []byte(trustedPub), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := "signed"
	files := fleet.AWS(ns)
	repo := testenv.NewSignedGitRepo(t, files, trusted)
	url := repo.ServeHTTP(t, "", "")
	args := append(drv.Args(t, url, ns), "--verify-signatures", keyring)
	drv.RunOnce(t, ns, args...)
	if got := drv.Replicas(ns, "prod-md-0"); got != 3 {
		t.Fatalf("replicas %d after the signed commit, want 3", got)
	}

	scaleTo := func(n string) map[string]string {
		return map[string]string{"fleet/workers.yaml": strings.Replace(files["fleet/workers.yaml"], "replicas: 3", "replicas: "+n, 1)}
	}
	for _, tc := range []struct {
		name   string
		commit func() string
		reason string
	}{
		{"signed by an unknown key", func() string { return repo.CommitSigned(t, "scale", scaleTo("5"), stranger) }, "does not verify"},
		{"unsigned", func() string { return repo.Commit(t, "scale", scaleTo("6")) }, "not signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sha := tc.commit()
			before := drv.ResourceVersions(t, ns, fleetKinds...)
			code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
			if code != 1 || !strings.Contains(errOut, sha) || !strings.Contains(errOut, tc.reason) {
				t.Errorf("run --once: exit %d, want 1 naming commit %s and %q\n%s%s", code, sha, tc.reason, out, errOut)
			}
			if after := drv.ResourceVersions(t, ns, fleetKinds...); len(after) != len(before) {
				t.Errorf("objects changed: %d before, %d after", len(before), len(after))
			} else {
				for k, rv := range before {
					if after[k] != rv {
						t.Errorf("%s was written (resourceVersion %s → %s)", k, rv, after[k])
					}
				}
			}
			if !driver.HasEvent(drv.StatusEvents(t, ns), "SourceVerificationFailed") {
				t.Error("no SourceVerificationFailed Event on the status ConfigMap")
			}
			if code, _, stderr := drv.Exec(context.Background(), append([]string{"plan"}, args...)...); code != 1 || !strings.Contains(stderr, tc.reason) {
				t.Errorf("plan: exit %d, want 1 with %q\n%s", code, tc.reason, stderr)
			}
		})
	}

	repo.CommitSigned(t, "scale, signed", scaleTo("4"), trusted)
	drv.RunOnce(t, ns, args...)
	if got := drv.Replicas(ns, "prod-md-0"); got != 4 {
		t.Errorf("replicas %d after a commit signed by the trusted key, want 4", got)
	}

	if code, _, errOut := drv.Exec(context.Background(), append([]string{"plan"}, append(drv.Args(t, url, ns), "--verify-signatures", filepath.Join(ns, "missing.asc"))...)...); code != 1 || !strings.Contains(errOut, "--verify-signatures") {
		t.Errorf("plan with a missing keyring: exit %d\n%s", code, errOut)
	}
}

// TestASignedRollbackIsRefused: under --verify-signatures, a server that serves an older signed
// commit (a force-push back), or a signed commit of another line of history, is refused — also by a
// driftd started anew, which remembers the last verified commit in its namespace — with
// SourceVerificationFailed saying why, and nothing is written; --allow-history-rewrite accepts it.
func TestASignedRollbackIsRefused(t *testing.T) {
	trusted, trustedPub := testenv.NewSigningKey(t, "Fleet Maintainer")
	keyring := filepath.Join(t.TempDir(), "trusted.asc")
	if err := os.WriteFile(keyring, []byte(trustedPub), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := "rollback"
	drv.Namespace(t, ns)
	files := fleet.AWS(ns)
	repo := testenv.NewSignedGitRepo(t, files, trusted)
	url := repo.ServeHTTP(t, "", "")
	args := append(drv.Args(t, url, ns), "--verify-signatures", keyring)
	drv.RunOnce(t, ns, args...)
	old, err := headOf(repo)
	if err != nil {
		t.Fatal(err)
	}
	scaleTo := func(n string) map[string]string {
		return map[string]string{"fleet/workers.yaml": strings.Replace(files["fleet/workers.yaml"], "replicas: 3", "replicas: "+n, 1)}
	}
	newer := repo.CommitSigned(t, "scale to 4", scaleTo("4"), trusted)
	drv.RunOnce(t, ns, args...)
	if got := drv.Replicas(ns, "prod-md-0"); got != 4 {
		t.Fatalf("replicas %d after the newer signed commit, want 4", got)
	}

	for _, tc := range []struct {
		name   string
		push   func() string
		reason string
	}{
		{"an older signed commit", func() string { repo.ResetBranch(t, old); return old }, "it is older: a rollback"},
		{"a signed commit of another line of history", func() string { return repo.CommitSigned(t, "elsewhere", scaleTo("7"), trusted) }, "it is on another line of history"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sha := tc.push()
			before := drv.ResourceVersions(t, ns, fleetKinds...)
			// Each run --once is a driftd started anew: the last verified commit comes from its namespace.
			code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
			want := "does not descend from " + newer
			if code != 1 || !strings.Contains(errOut, sha) || !strings.Contains(errOut, want) || !strings.Contains(errOut, tc.reason) {
				t.Errorf("run --once: exit %d, want 1 naming %s, %q and %q\n%s%s", code, sha, want, tc.reason, out, errOut)
			}
			if after := drv.ResourceVersions(t, ns, fleetKinds...); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("objects written: %v → %v", before, after)
			}
			if code, _, stderr := drv.Exec(context.Background(), append([]string{"plan", "--namespace", ns}, args...)...); code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("plan: exit %d, want 1 with %q\n%s", code, want, stderr)
			}
		})
	}
	if !driver.HasEvent(drv.StatusEvents(t, ns), "SourceVerificationFailed") {
		t.Error("no SourceVerificationFailed Event on the status ConfigMap")
	}
	drv.RunOnce(t, ns, append(args, "--allow-history-rewrite")...)
	if got := drv.Replicas(ns, "prod-md-0"); got != 7 {
		t.Errorf("replicas %d with --allow-history-rewrite, want the rewritten branch's 7", got)
	}
}

// headOf is the commit branch main names.
func headOf(repo *testenv.GitRepo) (string, error) {
	r, err := git.PlainOpen(repo.Dir)
	if err != nil {
		return "", err
	}
	ref, err := r.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		return "", err
	}
	return ref.Hash().String(), nil
}
