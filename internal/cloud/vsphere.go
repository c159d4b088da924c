package cloud

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/infra"
)

// vsphereTarget reads what driftd needs to read a VSphereCluster's VMs: the vCenters — the server
// and thumbprint Git gives, never ones a live edit put there (driftd would hand privileged
// credentials to whatever host a tenant names), plus the servers of the cluster's machines that Git
// or a VSphereDeploymentZone names — its identity, and the folders of its machines.
func (r *Reconciler) vsphereTarget(ctx context.Context, rendered *Rendered, cluster, vc *unstructured.Unstructured, t *infra.Cluster) error {
	t.Server, _, _ = unstructured.NestedString(vc.Object, "spec", "server")
	t.Thumbprint, _, _ = unstructured.NestedString(vc.Object, "spec", "thumbprint")
	if err := pinnedByGit(rendered, cluster, vc, t.Server, t.Thumbprint); err != nil {
		return err
	}
	if err := infra.SecureVCenter(t.Server); err != nil {
		return fmt.Errorf("VSphereCluster %s: %w", diff.KeyOf(vc), err)
	}
	allowed := map[string]string{} // server → thumbprint that Git or the platform names
	allowed[t.Server] = t.Thumbprint
	for srv, thumb := range rendered.serversOfTemplates(vc.GetNamespace()) {
		if _, ok := allowed[srv]; !ok {
			allowed[srv] = thumb
		}
	}
	if zones, err := r.listAll(ctx, schema.GroupVersionKind{Group: capvGroup, Version: "v1beta1", Kind: "VSphereDeploymentZone"}); err == nil {
		for _, z := range zones {
			if srv, _, _ := unstructured.NestedString(z.Object, "spec", "server"); srv != "" {
				if _, ok := allowed[srv]; !ok {
					allowed[srv] = ""
				}
			}
		}
	}
	id, err := r.vsphereIdentity(ctx, vc)
	if err != nil {
		return err
	}
	t.VSphere = id
	t.VCenters = []infra.VCenter{{Server: t.Server, Thumbprint: t.Thumbprint}}
	// The folders and servers of the cluster's VSphereMachines.
	machines, err := r.deps.Fleet.List(ctx, schema.GroupVersionKind{Group: capvGroup, Version: "v1beta1", Kind: "VSphereMachine"}, vc.GetNamespace(), map[string]string{diff.LabelClusterName: t.Name})
	if err != nil {
		return fmt.Errorf("listing its VSphereMachines: %w", err)
	}
	seenFolder, seenServer := map[string]bool{}, map[string]bool{t.Server: true}
	for _, m := range machines {
		if f, _, _ := unstructured.NestedString(m.Object, "spec", "folder"); f != "" && !seenFolder[f] {
			seenFolder[f] = true
			t.Folders = append(t.Folders, f)
		}
		srv, _, _ := unstructured.NestedString(m.Object, "spec", "server")
		if srv == "" || seenServer[srv] {
			continue
		}
		thumb, ok := allowed[srv]
		if !ok {
			return fmt.Errorf("VSphereMachine %s/%s names server %q, which neither Git nor a VSphereDeploymentZone names; driftd does not log in there", m.GetNamespace(), m.GetName(), srv)
		}
		if err := infra.SecureVCenter(srv); err != nil {
			return fmt.Errorf("VSphereMachine %s/%s: %w", m.GetNamespace(), m.GetName(), err)
		}
		seenServer[srv] = true
		t.VCenters = append(t.VCenters, infra.VCenter{Server: srv, Thumbprint: thumb})
	}
	sort.Strings(t.Folders)
	return nil
}

// pinnedByGit checks that the server and thumbprint a live VSphereCluster names are ones Git gives
// it: driftd hands the identity's credentials to that server, so a live edit must not choose it.
// A VSphereCluster rendered from Git must name exactly Git's; one Cluster API generated from a
// ClusterClass must name the server of the class' VSphereClusterTemplate, or one the Cluster's
// topology variables (or the class' variable defaults) give, as a topology patch would set it. Any
// other VSphereCluster is refused: nothing in Git says where its vCenter is.
func pinnedByGit(rendered *Rendered, cluster, vc *unstructured.Unstructured, server, thumbprint string) error {
	if d, ok := rendered.Objects.Get(diff.KeyOf(vc)); ok {
		gitServer, _, _ := unstructured.NestedString(d.Object, "spec", "server")
		gitThumb, _, _ := unstructured.NestedString(d.Object, "spec", "thumbprint")
		if gitServer != server || gitThumb != thumbprint {
			return fmt.Errorf("VSphereCluster %s names server %q (thumbprint %q) live but %q (%q) in Git; driftd logs in only where Git says", diff.KeyOf(vc), server, thumbprint, gitServer, gitThumb)
		}
		return nil
	}
	className, _, _ := unstructured.NestedString(cluster.Object, "spec", "topology", "classRef", "name")
	if className == "" {
		return fmt.Errorf("VSphereCluster %s is not in Git and not generated from a ClusterClass in Git; driftd logs in only at a server Git names", diff.KeyOf(vc))
	}
	classNS, _, _ := unstructured.NestedString(cluster.Object, "spec", "topology", "classRef", "namespace")
	if classNS == "" {
		classNS = cluster.GetNamespace()
	}
	class, ok := rendered.Objects.Get(diff.Key{Group: "cluster.x-k8s.io", Kind: "ClusterClass", Namespace: classNS, Name: className})
	if !ok {
		return fmt.Errorf("VSphereCluster %s comes from ClusterClass %s/%s, which is not in Git; driftd logs in only at a server Git names", diff.KeyOf(vc), classNS, className)
	}
	servers, thumbprints := map[string]bool{}, map[string]bool{"": true}
	tplKind, _, _ := unstructured.NestedString(class.Object, "spec", "infrastructure", "templateRef", "kind")
	tplName, _, _ := unstructured.NestedString(class.Object, "spec", "infrastructure", "templateRef", "name")
	if tpl, ok := rendered.Objects.Get(diff.Key{Group: capvGroup, Kind: tplKind, Namespace: classNS, Name: tplName}); ok {
		srv, _, _ := unstructured.NestedString(tpl.Object, "spec", "template", "spec", "server")
		thumb, _, _ := unstructured.NestedString(tpl.Object, "spec", "template", "spec", "thumbprint")
		servers[srv], thumbprints[thumb] = true, true
	}
	// Values a topology patch may have put there: the Cluster's variables, the class' defaults.
	var values []string
	vars, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "topology", "variables")
	collectStrings(vars, &values)
	classVars, _, _ := unstructured.NestedSlice(class.Object, "spec", "variables")
	for _, v := range classVars {
		if m, ok := v.(map[string]any); ok {
			def, _, _ := unstructured.NestedFieldNoCopy(m, "schema", "openAPIV3Schema", "default")
			collectStrings(def, &values)
		}
	}
	for _, v := range values {
		servers[v], thumbprints[v] = true, true
	}
	delete(servers, "")
	if !servers[server] || !thumbprints[thumbprint] {
		return fmt.Errorf("VSphereCluster %s (generated from ClusterClass %s/%s) names server %q (thumbprint %q), which neither the class' %s %s nor the Cluster's topology variables give; driftd logs in only where Git says",
			diff.KeyOf(vc), classNS, className, server, thumbprint, tplKind, tplName)
	}
	return nil
}

// collectStrings appends every string value in v (maps and lists walked).
func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

// serversOfTemplates returns the servers (and their thumbprints) the rendered VSphereMachineTemplates
// of namespace name, the first of each server in key order: read once a cycle for a namespace.
func (r *Rendered) serversOfTemplates(namespace string) map[string]string {
	if servers, ok := r.templateServers[namespace]; ok {
		return servers
	}
	servers := map[string]string{}
	for _, key := range r.Objects.Keys("VSphereMachineTemplate", namespace) {
		d, ok := r.Objects.Get(key)
		if !ok {
			continue
		}
		if srv, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "server"); srv != "" {
			if _, ok := servers[srv]; !ok {
				servers[srv], _, _ = unstructured.NestedString(d.Object, "spec", "template", "spec", "thumbprint")
			}
		}
	}
	if r.templateServers == nil {
		r.templateServers = map[string]map[string]string{}
	}
	r.templateServers[namespace] = servers
	return servers
}
