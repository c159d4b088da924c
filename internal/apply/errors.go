package apply

import (
	"context"
	"errors"
	"strings"

	ssaerrors "github.com/fluxcd/pkg/ssa/errors"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Rejected reports whether err is the API server's verdict on the object itself: invalid (its
// schema, an immutable field), a bad request, or a denial by an admission webhook or policy. A
// retry cannot change such a verdict; only a change in Git or of the live object can. Everything
// else (429, 5xx, timeouts, a webhook that cannot be reached, a namespace not there yet) is
// transient and retried with backoff.
func Rejected(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsRequestEntityTooLargeError(err),
		apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err):
		return true
	case apierrors.IsForbidden(err):
		// An admission webhook's or a ValidatingAdmissionPolicy's "no"; RBAC's "forbidden" is
		// transient: it ends when someone grants the rule.
		msg := err.Error()
		return strings.Contains(msg, "denied the request") || strings.Contains(msg, "denied request")
	}
	return false
}

// NamespaceMissing reports whether err says the object's namespace does not exist (yet).
func NamespaceMissing(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces"
}

// Hint says how to make a change the API server rejected the Cluster API way, or "" when there is
// no advice: a template's spec is immutable, so a change goes into a new template that the
// referrers are pointed at, and Cluster API rolls the machines out.
func Hint(kind string, err error) string {
	if !strings.HasSuffix(kind, "Template") || !ssaerrors.IsImmutableError(err) {
		return ""
	}
	return "Cluster API templates are immutable: put the change into a template with a new name and point the references (MachineDeployment, KubeadmControlPlane, ClusterClass) at it; Cluster API then rolls the machines out"
}
