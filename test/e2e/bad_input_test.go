package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestBadInputIsNamedAndTheRestOfTheFleetIsStillCorrected(t *testing.T) {
	ns := "bad-input"
	files := fleet.Prod(ns).
		Add("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n").
		Add("unknown.yaml", "apiVersion: widgets.example.com/v1\nkind: Widget\nmetadata:\n  name: sprocket\n").
		Add("invalid.yaml", "apiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineDeployment\nmetadata:\n  name: negative\nspec:\n  clusterName: prod\n  replicas: -2\n").
		Files()
	repo := testenv.NewGitRepo(t, files)
	args := drv.Args(t, repo.Dir, "bad-input")

	code, out, errOut := drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
	if code != 1 {
		t.Errorf("run --once over bad input exited %d, want 1", code)
	}
	for _, want := range []string{
		"fleet/broken.yaml", // malformed YAML: the file
		"fleet/unknown.yaml: Widget sprocket: unknown kind", // unknown kind: file, object, reason
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("errors do not name %q:\n%s", want, errOut)
		}
	}
	// A schema-invalid object is drift the API server rejects: reported with its file, the
	// server's reason and a CorrectionFailed Event, never silently dropped.
	for _, want := range []string{"MachineDeployment/" + ns + "/negative", "blocked", "fleet/invalid.yaml", "spec.replicas"} {
		if !strings.Contains(out, want) {
			t.Errorf("the findings do not show %q:\n%s", want, out)
		}
	}
	if evs := drv.Events(t, ns, "MachineDeployment", "negative"); !driver.HasEvent(evs, "CorrectionFailed") {
		t.Errorf("no CorrectionFailed Event on the rejected object: %q", evs)
	}
	// The rest of the fleet was created regardless.
	if got := drv.Replicas(ns, "prod-md-0"); got != 3 {
		t.Errorf("prod-md-0 replicas = %d; the valid part of the fleet was not applied\n%s", got, out)
	}

	// And drift in the valid part is still corrected.
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 9)
	code, doc, stderr := drv.Plan(t, args...)
	byName := map[string]diff.Finding{}
	for _, f := range doc.Findings {
		byName[f.Object.Name] = f
	}
	rejected := byName["negative"]
	if code != 1 || len(doc.Findings) != 2 || byName["prod-md-0"].Action != diff.ActionApply || len(doc.Errors) != 2 ||
		rejected.Action != diff.ActionBlocked || rejected.File != "fleet/invalid.yaml" || !strings.Contains(rejected.Reason, "spec.replicas") {
		t.Errorf("plan: exit %d, findings %+v, errors %q; want exit 1, the prod-md-0 drift, the rejected object blocked with its file and reason, and 2 errors\n%s",
			code, doc.Findings, doc.Errors, stderr)
	}
	_, _, _ = drv.Exec(context.Background(), append([]string{"run", "--once", "--namespace", ns}, args...)...)
	if got := drv.Replicas(ns, "prod-md-0"); got != 3 {
		t.Errorf("prod-md-0 replicas = %d after a correcting run beside bad input, want 3", got)
	}
}

func TestSourceTroubleCausesNoWrite(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		breakIt      func(t *testing.T, repo *testenv.GitRepo)
	}{
		{"empty render", "EmptyRender", func(t *testing.T, repo *testenv.GitRepo) {
			repo.Commit(t, "oops", map[string]string{"fleet/kustomization.yaml": "resources: []\n"})
		}},
		{"render failure", "RenderFailed", func(t *testing.T, repo *testenv.GitRepo) {
			repo.Commit(t, "oops", map[string]string{"fleet/kustomization.yaml": "resources: [cluster.yaml]\npatches:\n- path: gone.yaml\n"})
		}},
		{"failing fetch", "SourceFetchFailed", func(t *testing.T, repo *testenv.GitRepo) {
			repo.Commit(t, "force the next fetch", map[string]string{"fleet/README": "x"})
			breakRepo(t, repo)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "trouble-" + strings.ReplaceAll(tc.name, " ", "-")
			repo := testenv.NewGitRepo(t, fleet.AWS(ns))
			url := repo.ServeHTTP(t, "", "")
			metrics := testenv.FreeAddr(t)
			args := append(drv.Args(t, url, ns), "--interval", "500ms", "--prune", "--metrics-bind-address", metrics)
			drv.Start(t, ns, args...)
			testenv.Eventually(t, 30*time.Second, "the fleet to be created", func() bool { return drv.Watching(ns) && drv.Replicas(ns, "prod-md-0") == 3 })

			tc.breakIt(t, repo)
			testenv.Eventually(t, 20*time.Second, tc.reason+" on the status ConfigMap", func() bool {
				return driver.HasEvent(drv.StatusEvents(t, ns), tc.reason)
			})
			before := drv.ResourceVersions(t, ns, fleetKinds[:7]...)
			drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 4)
			testenv.Eventually(t, 10*time.Second, "the edit reported", func() bool {
				for _, e := range drv.Events(t, ns, "MachineDeployment", "prod-md-0") {
					if strings.HasPrefix(e, "DriftDetected: Modified") && strings.Contains(e, "no corrections while") {
						return true
					}
				}
				return false
			})
			testenv.WaitForCycles(t, metrics, 3, 30*time.Second) // three more cycles in trouble
			if got := drv.Replicas(ns, "prod-md-0"); got != 4 {
				t.Errorf("replicas = %d: driftd corrected although the source is in trouble", got)
			}
			after := drv.ResourceVersions(t, ns, fleetKinds[:7]...)
			delete(before, "MachineDeployment/prod-md-0")
			delete(after, "MachineDeployment/prod-md-0")
			if len(after) != len(before) {
				t.Errorf("objects before %v, after %v: something was deleted", before, after)
			}
			for k, rv := range before {
				if after[k] != rv {
					t.Errorf("%s was written (resourceVersion %s -> %s)", k, rv, after[k])
				}
			}
		})
	}
}

func TestSecondRunOverAnUnchangedFleetWritesNothing(t *testing.T) {
	ns := "second-run"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	args := drv.Args(t, repo.Dir, "second-run")
	drv.RunOnce(t, ns, args...)
	before := drv.ResourceVersions(t, ns, fleetKinds...)
	if len(before) < 8 {
		t.Fatalf("the fleet has %d objects after the first run: %v", len(before), before)
	}
	drv.RunOnce(t, ns, args...)
	after := drv.ResourceVersions(t, ns, fleetKinds...)
	for k, rv := range before {
		if after[k] != rv {
			t.Errorf("%s was written by the second run (resourceVersion %s -> %s)", k, rv, after[k])
		}
	}
}
