package e2e

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

const autoscaledPool = `---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: prod-md-auto
  annotations:
    cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size: "1"
    cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size: "10"
spec:
  clusterName: prod
  replicas: 2
  selector:
    matchLabels:
      pool: md-auto
  template:
    metadata:
      labels:
        pool: md-auto
    spec:
      clusterName: prod
      version: v1.34.1
      bootstrap:
        configRef:
          apiGroup: bootstrap.cluster.x-k8s.io
          kind: KubeadmConfigTemplate
          name: prod-md-0
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: AWSMachineTemplate
        name: prod-md-0
`

func TestMissingTemplateIsCreated(t *testing.T) {
	ns := "missing-template"
	repo := testenv.NewGitRepo(t, fleet.AWS(ns))
	args := drv.Args(t, repo.Dir, "missing-template")
	drv.RunOnce(t, ns, args...)
	if err := env.Client.Delete(context.Background(), drv.Get(t, gvkAMT, ns, "prod-md-0")); err != nil {
		t.Fatal(err)
	}
	code, doc, _ := drv.Plan(t, args...)
	if code != 2 || len(doc.Findings) != 1 || doc.Findings[0].Class != diff.ClassMissing || doc.Findings[0].Action != diff.ActionCreate ||
		doc.Findings[0].Object.Name != "prod-md-0" || doc.Findings[0].Object.Kind != "AWSMachineTemplate" {
		t.Fatalf("plan: exit %d, findings %+v; want one Missing AWSMachineTemplate prod-md-0 to create", code, doc.Findings)
	}
	drv.RunOnce(t, ns, args...)
	tmpl := drv.Get(t, gvkAMT, ns, "prod-md-0")
	if it, _, _ := unstructured.NestedString(tmpl.Object, "spec", "template", "spec", "instanceType"); it != "m6i.large" {
		t.Errorf("recreated template has instanceType %q, want m6i.large", it)
	}
	if tmpl.GetLabels()[diff.OwnerLabel] != "missing-template" {
		t.Errorf("recreated template labels = %v, want the owner label", tmpl.GetLabels())
	}
}

func TestReconcileDisabledObjectIsLeftAlone(t *testing.T) {
	ns := "disabled"
	repo, files, args := applied(t, ns)

	// The team hands the control plane's template to someone else: Git marks it disabled.
	files["fleet/cluster.yaml"] = replaceOnce(t, files["fleet/cluster.yaml"], "  name: prod-cp\nspec:\n  template:",
		"  name: prod-cp\n  annotations:\n    driftd.io/reconcile: disabled\nspec:\n  template:")
	repo.Commit(t, "hand over prod-cp", map[string]string{"fleet/cluster.yaml": files["fleet/cluster.yaml"]})
	tmpl := drv.Get(t, gvkAMT, ns, "prod-cp")
	unstructured.SetNestedField(tmpl.Object, "m6i.4xlarge", "spec", "template", "spec", "instanceType")
	if err := env.Client.Update(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	rv := drv.Get(t, gvkAMT, ns, "prod-cp").GetResourceVersion()

	drv.RunOnce(t, ns, args...)
	after := drv.Get(t, gvkAMT, ns, "prod-cp")
	if after.GetResourceVersion() != rv {
		t.Errorf("the disabled template was written (resourceVersion %s -> %s)", rv, after.GetResourceVersion())
	}
	code, doc, _ := drv.Plan(t, args...)
	if code != 0 {
		t.Errorf("plan exit %d with only a disabled object drifting, want 0", code)
	}
	if len(doc.Findings) != 1 || doc.Findings[0].Action != diff.ActionIgnored || doc.Findings[0].Object.Name != "prod-cp" {
		t.Errorf("findings = %+v, want prod-cp shown as ignored", doc.Findings)
	}
}

func TestAutoscaledPoolKeepsItsLiveReplicas(t *testing.T) {
	ns := "autoscaled"
	files := fleet.AWS(ns)
	files["fleet/workers.yaml"] += autoscaledPool
	repo := testenv.NewGitRepo(t, files)
	args := drv.Args(t, repo.Dir, "autoscaled")
	drv.RunOnce(t, ns, args...)
	if got := drv.Replicas(ns, "prod-md-auto"); got != 2 {
		t.Fatalf("created with %d replicas, want Git's 2", got)
	}
	drv.Scale(t, "cluster-autoscaler", ns, "prod-md-auto", 8)
	rv := drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-auto").GetResourceVersion()

	code, doc, _ := drv.Plan(t, args...)
	if code != 0 || len(doc.Findings) != 0 {
		t.Errorf("plan: exit %d, findings %+v; the autoscaler's replicas are no drift", code, doc.Findings)
	}
	drv.RunOnce(t, ns, args...)
	if got := drv.Replicas(ns, "prod-md-auto"); got != 8 {
		t.Errorf("replicas = %d after a correcting run, want the autoscaler's 8", got)
	}
	if got := drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-auto").GetResourceVersion(); got != rv {
		t.Errorf("the autoscaled pool was written (resourceVersion %s -> %s)", rv, got)
	}
}
