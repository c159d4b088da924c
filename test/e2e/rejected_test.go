package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
)

// immutableTemplates denies any change of an AWSMachineTemplate's spec, as CAPA's webhook does.
func immutableTemplates(req *admissionv1.AdmissionRequest) testenv.Decision {
	if req.Operation != admissionv1.Update {
		return testenv.Decision{Allowed: true}
	}
	var old, updated unstructured.Unstructured
	if json.Unmarshal(req.OldObject.Raw, &old.Object) != nil || json.Unmarshal(req.Object.Raw, &updated.Object) != nil {
		return testenv.Decision{Allowed: true}
	}
	a, _, _ := unstructured.NestedMap(old.Object, "spec")
	b, _, _ := unstructured.NestedMap(updated.Object, "spec")
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) == string(jb) {
		return testenv.Decision{Allowed: true}
	}
	return testenv.Decision{Code: http.StatusForbidden, Message: "AWSMachineTemplate spec.template.spec field is immutable. Please create a new resource instead."}
}

// TestACorrectionTheServerRejectsIsDrift: Git changes an immutable field of a template (not the
// Cluster API way), and the provider's webhook denies it. That is drift driftd cannot correct:
// a CorrectionFailed Event on the object with the server's message and the hint, counted in the
// metrics and the status, plan exit 2 with action blocked — and not dry-run again every cycle.
func TestACorrectionTheServerRejectsIsDrift(t *testing.T) {
	ns := "rejected"
	repo, files, args := applied(t, ns)
	hook := env.NewValidatingWebhook(t, "immutable-templates", ns, []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"infrastructure.cluster.x-k8s.io"}, APIVersions: []string{"*"},
			Resources: []string{"awsmachinetemplates"}},
	}}, immutableTemplates)
	testenv.Eventually(t, 30*time.Second, "the webhook to be in force", func() bool {
		amt := drv.Get(t, gvkAMT, ns, "prod-md-0")
		_ = unstructured.SetNestedField(amt.Object, "m6i.metal", "spec", "template", "spec", "instanceType")
		err := env.Client.Update(context.Background(), amt, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "immutable")
	})

	repo.Commit(t, "larger workers, in place", map[string]string{"fleet/workers.yaml": replaceOnce(t, files["fleet/workers.yaml"], "instanceType: m6i.large", "instanceType: m6i.xlarge")})
	code, doc, stderr := drv.Plan(t, args...)
	var f *diff.Finding
	for i := range doc.Findings {
		if doc.Findings[i].Object.Kind == "AWSMachineTemplate" && doc.Findings[i].Object.Name == "prod-md-0" {
			f = &doc.Findings[i]
		}
	}
	if code != 2 || f == nil || f.Action != diff.ActionBlocked || !strings.Contains(f.Reason, "immutable") || !strings.Contains(f.Reason, "new name") ||
		len(f.Fields) != 1 || f.Fields[0].Path != "/spec/template/spec/instanceType" || f.Fields[0].Desired != "m6i.xlarge" {
		t.Fatalf("plan: exit %d, finding %+v; want the template blocked with the server's reason, the hint and the field\n%s", code, f, stderr)
	}

	before := drv.ResourceVersions(t, ns, fleetKinds[:7]...)
	metrics := testenv.FreeAddr(t)
	drv.Start(t, ns, append(args, "--interval", "300ms", "--metrics-bind-address", metrics)...)
	testenv.Eventually(t, 30*time.Second, "a CorrectionFailed Event with the server's message and the hint", func() bool {
		for _, e := range drv.Events(t, ns, "AWSMachineTemplate", "prod-md-0") {
			if strings.HasPrefix(e, "CorrectionFailed:") && strings.Contains(e, "immutable") && strings.Contains(e, "hint:") {
				return true
			}
		}
		return false
	})
	testenv.WaitForCycles(t, metrics, 2, 30*time.Second)
	if v := testenv.MetricValue(metrics, `driftd_drifted_objects{class="Modified",cluster_name="prod",layer="spec"}`); v != 1 {
		t.Errorf("driftd_drifted_objects for the rejected template = %v, want 1", v)
	}
	calls := hook.Calls()
	testenv.WaitForCycles(t, metrics, 3, 30*time.Second)
	if hook.Calls() != calls {
		t.Errorf("the rejected object was dry-run again %d times in 3 unchanged cycles; the verdict stands until Git or the object changes", hook.Calls()-calls)
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: drv.StatusName(ns)}, cm); err != nil {
		t.Fatal(err)
	}
	var sum report.Summary
	if err := json.Unmarshal([]byte(cm.Data["summary.json"]), &sum); err != nil || sum.Counts["prod"][diff.ClassModified] != 1 {
		t.Errorf("status summary %s: want the rejected template counted (%v)", cm.Data["summary.json"], err)
	}
	failed := 0
	for _, e := range drv.Events(t, ns, "AWSMachineTemplate", "prod-md-0") {
		if strings.HasPrefix(e, "CorrectionFailed:") {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d CorrectionFailed Events over several cycles, want 1: the same rejection is announced once", failed)
	}
	if after := drv.ResourceVersions(t, ns, fleetKinds[:7]...); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the fleet was written while its template was rejected: %v → %v", before, after)
	}
}
