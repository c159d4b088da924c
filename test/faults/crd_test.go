package faults

import (
	"context"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

var gvkGadget = schema.GroupVersionKind{Group: "faults.example.com", Version: "v1", Kind: "Gadget"}

func gadgetCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gadgets.faults.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: gvkGadget.Group, Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "Gadget", ListKind: "GadgetList", Plural: "gadgets", Singular: "gadget"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"spec": {Type: "object", XPreserveUnknownFields: &preserve}}}}}},
		},
	}
}

// installGadgets installs the Gadget CRD, as a team installs a provider's CRDs beside driftd, and
// waits until the kind is served.
func installGadgets(t *testing.T) {
	t.Helper()
	if err := env.Client.Create(context.Background(), gadgetCRD()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the Gadget kind served", func() bool {
		l := &unstructured.UnstructuredList{}
		l.SetGroupVersionKind(gvkGadget.GroupVersion().WithKind("GadgetList"))
		return env.Client.List(context.Background(), l) == nil
	})
}

func gadgetExists(ns string) bool {
	g := &unstructured.Unstructured{}
	g.SetGroupVersionKind(gvkGadget)
	return env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "sprocket"}, g) == nil
}

// TestACRDDeletedAndRestoredWhileItsKindIsWatched: the CRD of a kind the fleet uses is deleted
// while driftd watches the kind (its objects go with it), then installed again. driftd keeps
// running and correcting the rest (an edit meanwhile), recreates the Gadget from Git once its kind
// is back, and writes nothing else.
func TestACRDDeletedAndRestoredWhileItsKindIsWatched(t *testing.T) {
	ns := "fault-crd"
	installGadgets(t)
	files := fleet.Prod(ns).Add("gadget.yaml", "apiVersion: faults.example.com/v1\nkind: Gadget\nmetadata:\n  name: sprocket\nspec:\n  teeth: 12\n").Files()
	repo := testenv.NewGitRepo(t, files)
	d := &deployed{proxy: env.NewAPIProxy(t), probe: testenv.FreeAddr(t)}
	d.args = daemonArgs(t, ns, repo, d.proxy, "--leader-elect", "--interval", "2s", "--health-probe-bind-address", d.probe)
	d.proc = spawnImage(t, d.args...)
	testenv.Eventually(t, 90*time.Second, "the Gadget created", func() bool { return gadgetExists(ns) })

	if err := env.Client.Delete(context.Background(), gadgetCRD()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the CRD and its Gadget gone", func() bool {
		return env.Client.Get(context.Background(), client.ObjectKey{Name: "gadgets.faults.example.com"}, &apiextensionsv1.CustomResourceDefinition{}) != nil
	})
	d.proxy.Reset()
	drv.Scale(t, "kubectl-edit", ns, "prod-md-0", 7)
	testenv.Eventually(t, 60*time.Second, "the edit corrected while the CRD is gone", func() bool { return drv.Replicas(ns, "prod-md-0") == 3 })
	cycles := strings.Count(d.proc.Out.String(), "Cycle done")
	testenv.Eventually(t, 30*time.Second, "two cycles meeting the missing kind", func() bool {
		return strings.Count(d.proc.Out.String(), "Cycle done") >= cycles+2
	})
	if d.proc.Exited() {
		t.Fatalf("driftd exited without the CRD:\n%s", d.proc.Out.String())
	}

	installGadgets(t)
	testenv.Eventually(t, 90*time.Second, "the Gadget recreated from Git", func() bool { return gadgetExists(ns) })
	gadgets := func(r testenv.Request) bool { return strings.Contains(r.Path, "/gadgets") }
	t.Logf("writes from the deletion on:\n  %s", strings.Join(writes(d.proxy), "\n  "))
	if bad := unintended(d.proxy, bookkeeping(system(ns)), applyOf(ns, "prod-md-0"), gadgets); len(bad) > 0 {
		t.Errorf("unintended writes: %v", bad)
	}
}
