package diff

import (
	"encoding/json"
	"fmt"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The rules below say whether a cluster's namespace may use an infrastructure identity, exactly as
// its provider decides: driftd reads a cluster's inventory with the cluster's own identity only
// where the provider itself would use it, so a tenant's AWSCluster cannot make driftd assume a role
// the tenant may not use. The providers keep these rules in unexported code (CAPA) or behind their
// own typed API (CAPV), so they are restated here, each with the file and line it restates; the
// table tests in identity_test.go hold the cases side by side with the providers' own comments.

// capaAllowedNamespaces is CAPA v2.13.0's AllowedNamespaces (api/v1beta2/awsidentity_types.go:40),
// decoded from JSON as CAPA's client decodes it: an absent or null list is nil, an empty one is not.
type capaAllowedNamespaces struct {
	NamespaceList []string             `json:"list"`
	Selector      metav1.LabelSelector `json:"selector"`
}

// CAPAAllows reports whether a namespace (with its labels) may use a CAPA identity
// (AWSClusterControllerIdentity, AWSClusterRoleIdentity, AWSClusterStaticIdentity) whose
// spec.allowedNamespaces is allowed (nil when absent or null). It restates
// isClusterPermittedToUsePrincipal (CAPA v2.13.0, pkg/cloud/scope/session.go:409-457):
//   - nil: no namespace;
//   - {} (no list, no selector): every namespace;
//   - a namespace in list;
//   - otherwise the selector, where an empty selector ({}, or {matchLabels: {}}) matches nothing.
//
// CAPA checks every identity of a sourceIdentityRef chain this way (session.go:265, 342, 369).
func CAPAAllows(allowed any, namespace string, nsLabels map[string]string) (bool, error) {
	if allowed == nil {
		return false, nil
	}
	var an capaAllowedNamespaces
	js, err := json.Marshal(allowed)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(js, &an); err != nil {
		return false, fmt.Errorf("allowedNamespaces: %w", err)
	}
	if cmp.Equal(an, capaAllowedNamespaces{}) {
		return true, nil
	}
	for _, n := range an.NamespaceList {
		if n == namespace {
			return true, nil
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(&an.Selector)
	if err != nil {
		return false, fmt.Errorf("allowedNamespaces.selector: %w", err)
	}
	if sel.Empty() {
		return false, nil
	}
	return sel.Matches(labels.Set(nsLabels)), nil
}

// capvAllowedNamespaces is CAPV v1.14.0's AllowedNamespaces (apis/v1beta1/vsphereclusteridentity_types.go:92).
type capvAllowedNamespaces struct {
	Selector metav1.LabelSelector `json:"selector"`
}

// CAPVAllows reports whether a namespace (with its labels) may use a VSphereClusterIdentity whose
// spec.allowedNamespaces is allowed (nil when absent or null) and whose status.ready is ready. It
// restates GetCredentials (CAPV v1.14.0, pkg/identity/identity.go:72-93): an identity not ready is
// refused; nil allows no namespace; otherwise the selector decides, and an empty selector matches
// every namespace (labels.Everything, unlike CAPA).
func CAPVAllows(allowed any, ready bool, nsLabels map[string]string) (bool, error) {
	if !ready {
		return false, fmt.Errorf("the identity is not ready (status.ready)")
	}
	if allowed == nil {
		return false, nil
	}
	var an capvAllowedNamespaces
	js, err := json.Marshal(allowed)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(js, &an); err != nil {
		return false, fmt.Errorf("allowedNamespaces: %w", err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&an.Selector)
	if err != nil {
		return false, fmt.Errorf("allowedNamespaces.selector: %w", err)
	}
	return sel.Matches(labels.Set(nsLabels)), nil
}
