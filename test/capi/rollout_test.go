package capi

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

// predict runs `driftd plan --ref branch --fail-on-rollout` on the fleet repository, as CI runs it on
// a pull request's branch before the merge, and returns its exit code, its document, and the
// rollout it predicts for MachineDeployment md (failing the test when it predicts none).
func predict(t *testing.T, repo *testenv.GitRepo, system, branch, md string) (int, driver.PlanDoc, *diff.Rollout) {
	t.Helper()
	code, doc, stderr := drv.Plan(t, "--repo", repo.Dir, "--ref", branch, "--path", "fleet", "--kubeconfig", drv.Kubeconfig(t),
		"--namespace", system, "--git-cache-dir", t.TempDir(), "--fail-on-rollout")
	f := doc.Finding("MachineDeployment", md)
	if f == nil || f.Rollout == nil {
		t.Fatalf("plan --ref %s: no rollout predicted for MachineDeployment %s (exit %d): %+v\n%s", branch, md, code, doc.Findings, stderr)
	}
	t.Logf("plan --ref %s: exit %d; %s: %s %d (%s); %s", branch, code, md, f.Rollout.Effect, f.Rollout.Machines, f.Rollout.Reason, doc.Rollouts)
	return code, doc, f.Rollout
}

// replaced compares a pool's Machines before and after (by UID): how many of before are gone,
// and how many are new.
func replaced(before, after []string) (gone, created int) {
	for _, uid := range before {
		if !slices.Contains(after, uid) {
			gone++
		}
	}
	for _, uid := range after {
		if !slices.Contains(before, uid) {
			created++
		}
	}
	return gone, created
}

// rolloutPredictions proposes three changes to dev1-md-0 on a branch each, has `plan --ref`
// predict what Cluster API will do to its Machines, merges, and compares with what Cluster API's
// controllers then do (the Machines' UIDs): a label of the Machines (in place: none replaced), one
// more replica (scale: one created, none replaced), and spec.rollout.after set to now (roll: every
// Machine created before it replaced).
func rolloutPredictions(t *testing.T, repo *testenv.GitRepo, system string) {
	file := filepath.Join(repo.Dir, "fleet", "dev1.yaml")
	for _, tc := range []struct {
		name, branch string
		edit         func(string) string
		effect       diff.Effect
		code         int
		settled      func(before []string) bool
	}{
		{
			name: "a label of the Machines", branch: "label-workers", effect: diff.EffectInPlace, code: 2,
			edit: func(s string) string {
				return strings.Replace(s, "    metadata:\n      labels:\n        pool: dev1-md-0\n", "    metadata:\n      labels:\n        pool: dev1-md-0\n        team: platform\n", 1)
			},
			settled: func([]string) bool {
				ms := pool(t, "dev1-md-0")
				for _, m := range ms {
					if m.GetLabels()["team"] != "platform" {
						return false
					}
				}
				return len(ms) > 0
			},
		},
		{
			name: "one more replica", branch: "three-workers", effect: diff.EffectScale, code: 2,
			edit: func(s string) string {
				return strings.Replace(s, "  clusterName: dev1\n  replicas: 2\n", "  clusterName: dev1\n  replicas: 3\n", 1)
			},
			settled: func([]string) bool { return len(runningUIDs(pool(t, "dev1-md-0"))) == 3 && len(pool(t, "dev1-md-0")) == 3 },
		},
		{
			name: "rollout.after set to now", branch: "roll-workers", effect: diff.EffectRoll, code: 3,
			edit: func(s string) string {
				after := time.Now().UTC().Format(time.RFC3339)
				return strings.Replace(s, "  clusterName: dev1\n  replicas: 3\n", "  clusterName: dev1\n  replicas: 3\n  rollout:\n    after: \""+after+"\"\n", 1)
			},
			settled: func(before []string) bool {
				now := runningUIDs(pool(t, "dev1-md-0"))
				gone, _ := replaced(before, now)
				return gone == len(before) && len(now) == 3 && len(pool(t, "dev1-md-0")) == 3
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			changed := tc.edit(string(b))
			if changed == string(b) {
				t.Fatalf("fixture: the edit changed nothing in fleet/dev1.yaml")
			}
			before := runningUIDs(pool(t, "dev1-md-0"))
			commit := repo.Propose(t, tc.branch, tc.name, map[string]string{"fleet/dev1.yaml": changed})
			code, doc, r := predict(t, repo, system, tc.branch, "dev1-md-0")
			if code != tc.code || r.Effect != tc.effect {
				t.Errorf("plan --ref %s --fail-on-rollout: exit %d, effect %s; want %d and %s", tc.branch, code, r.Effect, tc.code, tc.effect)
			}
			if r.Replaces() != doc.Rollouts.Machines {
				t.Errorf("the document's total %d Machines replaced differs from its one rolling finding's %d", doc.Rollouts.Machines, r.Replaces())
			}

			repo.ResetBranch(t, commit) // merged
			began := time.Now()
			testenv.Eventually(t, 4*time.Minute, "Cluster API done with "+tc.name, func() bool { return tc.settled(before) })
			gone, created := replaced(before, runningUIDs(pool(t, "dev1-md-0")))
			t.Logf("Cluster API, %s after the merge: %d Machines replaced, %d created", time.Since(began).Round(time.Second), gone, created)
			predictedCreated := 0
			switch r.Effect {
			case diff.EffectRoll:
				predictedCreated = r.Machines
			case diff.EffectScale:
				predictedCreated = r.Machines
			}
			if gone != r.Replaces() || created != predictedCreated {
				t.Errorf("predicted %s of %d Machines; Cluster API replaced %d and created %d", r.Effect, r.Machines, gone, created)
			}
		})
	}
}
