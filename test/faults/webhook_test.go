package faults

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// TestAnAdmissionWebhookThatCannotBeReached: the provider's admission webhook for
// MachineDeployments is down (the API server cannot call it, so it refuses every write it would
// check) while driftd corrects an edit. That is no verdict on the object: driftd retries, writes
// nothing while the webhook is down, reports no rejection, and corrects the edit once it is back.
func TestAnAdmissionWebhookThatCannotBeReached(t *testing.T) {
	ns := "fault-webhook-down"
	d := startDeployed(t, ns, "1h")
	hook := env.NewValidatingWebhook(t, "machinedeployments", ns, []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"cluster.x-k8s.io"}, APIVersions: []string{"*"},
			Resources: []string{"machinedeployments"}},
	}}, func(*admissionv1.AdmissionRequest) testenv.Decision { return testenv.Decision{Allowed: true} })
	// Down for driftd's requests (dry runs and writes), up for the edit made behind its back.
	fromDriftd := func(r *admissionv1.AdmissionRequest) bool {
		var opts metav1.PatchOptions
		_ = json.Unmarshal(r.Options.Raw, &opts)
		return opts.FieldManager == "driftd"
	}
	testenv.Eventually(t, 30*time.Second, "the webhook to be in force", func() bool {
		md := drv.Get(t, diff.GVKMachineDeployment, ns, "prod-md-0")
		_ = unstructured.SetNestedField(md.Object, int64(3), "spec", "replicas")
		_ = env.Client.Update(context.Background(), md, client.DryRunAll)
		return hook.Calls() > 0
	})
	hook.Refuse(fromDriftd)
	d.proxy.Reset()
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 30*time.Second, "driftd's correction refused at the webhook", func() bool {
		return len(d.proxy.Requests(func(r testenv.Request) bool { return applyOf(ns, "prod-md-0")(r) && r.Status >= 500 })) > 0
	})
	testenv.Eventually(t, 30*time.Second, "driftd's retry refused too", func() bool {
		return len(d.proxy.Requests(func(r testenv.Request) bool { return applyOf(ns, "prod-md-0")(r) && r.Status >= 500 })) > 1
	})
	if got := drv.Replicas(ns, "prod-md-0"); got != 7 {
		t.Fatalf("replicas %d while the webhook is down; the test proved nothing", got)
	}
	if bad := unintended(d.proxy, bookkeeping(system(ns))); len(bad) > 0 {
		t.Errorf("writes reached the server while the webhook was down: %v", bad)
	}
	for _, e := range drv.Events(t, ns, "MachineDeployment", "prod-md-0") {
		if strings.Contains(e, "rejects") {
			t.Errorf("a webhook that cannot be reached was taken for a verdict: %s", e)
		}
	}

	hook.Refuse(nil)
	testenv.Eventually(t, 60*time.Second, "the edit corrected once the webhook is back", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	if bad := unintended(d.proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0")); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}
