package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestPausedClusterIsDetectOnly(t *testing.T) {
	ns := "paused"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	args := drv.Args(t, repo.Dir, "paused")
	drv.RunOnce(t, ns, args...)

	cluster := drv.Get(t, diff.GVKCluster, ns, "prod")
	cluster.SetAnnotations(map[string]string{diff.AnnotationPaused: ""})
	if err := env.Client.Update(context.Background(), cluster); err != nil {
		t.Fatal(err)
	}
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 2)

	code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...)
	if code != 2 || len(doc.Findings) != 1 || doc.Findings[0].Action != diff.ActionBlocked || !strings.Contains(doc.Findings[0].Reason, "paused") {
		t.Fatalf("plan: exit %d, findings %+v; want the MachineDeployment blocked because its cluster is paused", code, doc.Findings)
	}
	drv.RunOnce(t, ns, args...)
	if got := drv.Replicas(ns, "prod-md-0"); got != 2 {
		t.Errorf("replicas = %d: a paused cluster's MachineDeployment was corrected", got)
	}
	if evs := drv.Events(t, ns, "MachineDeployment", "prod-md-0"); !driver.HasEvent(evs, "CorrectionBlocked") {
		t.Errorf("Events %q lack CorrectionBlocked", evs)
	}
}

func TestIgnoreRulesFromTheConfigFile(t *testing.T) {
	ns := "ignore-rules"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	config := filepath.Join(t.TempDir(), "driftd.yaml")
	if err := os.WriteFile(config, []byte(`
mode: correct
ignore:
- paths: ["/spec/template/spec/version"]
  target:
    kind: MachineDeployment
    name: prod-md-.*
`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(drv.Args(t, repo.Dir, "ignore-rules"), "--config", config)
	drv.RunOnce(t, ns, args...)

	md := drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-0")
	unstructured.SetNestedField(md.Object, "v1.35.0", "spec", "template", "spec", "version")
	if err := env.Client.Update(context.Background(), md, client.FieldOwner("upgrade-bot")); err != nil {
		t.Fatal(err)
	}
	if code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...); code != 0 || len(doc.Findings) != 0 {
		t.Errorf("plan: exit %d, findings %+v; the ignored version is no drift", code, doc.Findings)
	}
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 1)
	drv.RunOnce(t, ns, args...)
	md = drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-0")
	version, _, _ := unstructured.NestedString(md.Object, "spec", "template", "spec", "version")
	if r, _, _ := unstructured.NestedInt64(md.Object, "spec", "replicas"); r != 3 || version != "v1.35.0" {
		t.Errorf("after a correcting run replicas = %d, version = %s; want replicas restored to 3 and the ignored version kept", r, version)
	}

	t.Run("a bad config file is named", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("repo: x\nintervall: 5m\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := drv.Exec(context.Background(), "plan", "--config", bad)
		if code != 1 || !strings.Contains(errOut, bad) || !strings.Contains(errOut, `"intervall"`) {
			t.Errorf("plan with an unknown config key: exit %d, stderr %q", code, errOut)
		}
	})
}

func TestOrphansAreReportedAndPrunedOnlyWhenAllowed(t *testing.T) {
	ns := "orphans"
	repo, files, args := applied(t, ns)
	uid := drv.Get(t, diff.GVKCluster, ns, "prod").GetUID()

	// The MachineHealthCheck leaves Git; its Cluster stays.
	workers := files["fleet/workers.yaml"]
	repo.Commit(t, "retire the health check", map[string]string{
		"fleet/workers.yaml": workers[:strings.Index(workers, "---\napiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineHealthCheck")],
	})
	code, doc, _ := drv.Plan(t, append(args, "--namespace", ns)...)
	orphaned := map[string]diff.Action{}
	for _, f := range doc.Findings {
		if f.Class == diff.ClassOrphaned {
			orphaned[f.Object.Kind+"/"+f.Object.Name] = f.Action
		}
	}
	if code != 2 || len(orphaned) != 1 || orphaned["MachineHealthCheck/prod-md-0"] != diff.ActionReport {
		t.Fatalf("plan: exit %d, orphans %v; want the MachineHealthCheck reported", code, orphaned)
	}
	drv.RunOnce(t, ns, args...) // pruning off: reported, kept
	mhc := &unstructured.Unstructured{}
	mhc.SetGroupVersionKind(diff.GVKMachineHealthCheck)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "prod-md-0"}, mhc); err != nil {
		t.Fatalf("the orphaned MachineHealthCheck was deleted without --prune: %v", err)
	}
	drv.RunOnce(t, ns, append(args, "--prune")...)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "prod-md-0"}, mhc); !apierrors.IsNotFound(err) {
		t.Errorf("the orphaned MachineHealthCheck survived --prune: %v", err)
	}
	if drv.Get(t, diff.GVKCluster, ns, "prod").GetUID() != uid {
		t.Error("the Cluster was replaced")
	}
}
