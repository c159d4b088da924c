package e2e

import (
	"testing"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestPlanExplainsAReplicasEditOverSmartHTTP(t *testing.T) {
	ns := "plan-http"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	url := repo.ServeHTTP(t, "fleet-bot", "s3cret")
	t.Setenv("DRIFTD_GIT_PASSWORD", "s3cret")
	args := append(drv.Args(t, url, "plan-http"), "--git-username", "fleet-bot")

	drv.RunOnce(t, ns, args...)
	code, doc, stderr := drv.Plan(t, args...)
	if code != 0 || len(doc.Findings) != 0 {
		t.Fatalf("plan after a correcting run: exit %d, findings %+v, stderr %s; want exit 0 and no drift", code, doc.Findings, stderr)
	}

	drv.Scale(t, "kubectl-scale", ns, "prod-md-0", 7)
	code, doc, stderr = drv.Plan(t, args...)
	if code != 2 {
		t.Fatalf("plan after kubectl scale: exit %d, want 2; stderr %s", code, stderr)
	}
	if len(doc.Findings) != 1 {
		t.Fatalf("findings = %+v, want one", doc.Findings)
	}
	f := doc.Findings[0]
	if f.Layer != diff.LayerSpec || f.Class != diff.ClassModified || f.Cluster != "prod" || f.Action != diff.ActionApply ||
		f.Object.Kind != "MachineDeployment" || f.Object.Name != "prod-md-0" || f.Object.Namespace != ns || f.File != "fleet/workers.yaml" {
		t.Errorf("finding = %+v", f)
	}
	if len(f.Fields) != 1 {
		t.Fatalf("fields = %+v, want /spec/replicas only", f.Fields)
	}
	fd := f.Fields[0]
	if fd.Path != "/spec/replicas" || fd.Desired != float64(3) || fd.Live != float64(7) || fd.Manager != "kubectl-scale" || fd.Operation != "Update" || fd.Time == nil {
		t.Errorf("field = %+v, want /spec/replicas desired 3 live 7 set by kubectl-scale (Update) with a time", fd)
	}
	if want := "main@sha1:"; len(doc.Revision) != len(want)+40 || doc.Revision[:len(want)] != want {
		t.Errorf("revision = %q, want main@sha1:<40 hex>", doc.Revision)
	}
}
