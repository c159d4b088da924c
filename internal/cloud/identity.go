package cloud

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/infra"
)

// errNotAllowed means a cluster's namespace may not use the identity it names: driftd then reads
// nothing of that cluster with it, as its provider would refuse to.
var errNotAllowed = errors.New("its namespace is not among the identity's allowedNamespaces")

const capaGroup, capvGroup = "infrastructure.cluster.x-k8s.io", "infrastructure.cluster.x-k8s.io"

// awsIdentity resolves the identity an AWSCluster names (spec.identityRef) the way CAPA does: none
// is the controller's default chain; AWSClusterControllerIdentity is the default chain too;
// AWSClusterStaticIdentity is the keys of its Secret (in CAPA's namespace); AWSClusterRoleIdentity
// is its role assumed from its sourceIdentityRef, chained. The identity the cluster names must allow
// the cluster's namespace.
func (r *Reconciler) awsIdentity(ctx context.Context, awsCluster *unstructured.Unstructured) (*infra.AWSIdentity, error) {
	kind, _, _ := unstructured.NestedString(awsCluster.Object, "spec", "identityRef", "kind")
	name, _, _ := unstructured.NestedString(awsCluster.Object, "spec", "identityRef", "name")
	if kind == "" {
		return nil, nil
	}
	return r.resolveAWS(ctx, kind, name, awsCluster.GetNamespace(), 0)
}

// resolveAWS resolves one identity of a chain. Every identity of the chain must allow the
// cluster's namespace, as CAPA checks every link (pkg/cloud/scope/session.go:265, 342, 369).
func (r *Reconciler) resolveAWS(ctx context.Context, kind, name, namespace string, depth int) (*infra.AWSIdentity, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%s %s: sourceIdentityRef chains more than 4 roles (a loop?)", kind, name)
	}
	obj, err := r.identityObject(ctx, schema.GroupVersionKind{Group: capaGroup, Version: "v1beta2", Kind: kind}, name)
	if err != nil {
		return nil, err
	}
	if kind == "AWSClusterControllerIdentity" && name != "default" {
		// CAPA's singleton (session.go:353): any other name is refused.
		return nil, fmt.Errorf("%s %s: CAPA uses only the AWSClusterControllerIdentity named default", kind, name)
	}
	if err := r.allowed(ctx, obj, namespace, diff.CAPAAllows); err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	id := &infra.AWSIdentity{Key: kind + "/" + name}
	switch kind {
	case "AWSClusterControllerIdentity":
		return id, nil
	case "AWSClusterStaticIdentity":
		secretName, _, _ := unstructured.NestedString(obj.Object, "spec", "secretRef")
		secret := &corev1.Secret{}
		if err := r.deps.Client.Get(ctx, client.ObjectKey{Namespace: r.opts.AWSIdentityNamespace, Name: secretName}, secret); err != nil {
			return nil, fmt.Errorf("%s %s: reading its Secret %s/%s: %w", kind, name, r.opts.AWSIdentityNamespace, secretName, err)
		}
		id.Static = &infra.StaticCredentials{AccessKeyID: string(secret.Data["AccessKeyID"]),
			SecretAccessKey: string(secret.Data["SecretAccessKey"]), SessionToken: string(secret.Data["SessionToken"])}
		if id.Static.AccessKeyID == "" || id.Static.SecretAccessKey == "" {
			return nil, fmt.Errorf("%s %s: its Secret %s/%s lacks AccessKeyID or SecretAccessKey", kind, name, r.opts.AWSIdentityNamespace, secretName)
		}
		return id, nil
	case "AWSClusterRoleIdentity":
		role := infra.AssumeRole{}
		role.ARN, _, _ = unstructured.NestedString(obj.Object, "spec", "roleARN")
		role.ExternalID, _, _ = unstructured.NestedString(obj.Object, "spec", "externalID")
		role.SessionName, _, _ = unstructured.NestedString(obj.Object, "spec", "sessionName")
		srcKind, _, _ := unstructured.NestedString(obj.Object, "spec", "sourceIdentityRef", "kind")
		srcName, _, _ := unstructured.NestedString(obj.Object, "spec", "sourceIdentityRef", "name")
		if srcKind != "" {
			src, err := r.resolveAWS(ctx, srcKind, srcName, namespace, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s %s: its sourceIdentityRef: %w", kind, name, err)
			}
			id.Static, id.Roles = src.Static, src.Roles
		}
		id.Roles = append(id.Roles, role)
		return id, nil
	}
	return nil, fmt.Errorf("identityRef kind %q is not an identity CAPA knows", kind)
}

// vsphereIdentity resolves the credentials a VSphereCluster names (spec.identityRef): a Secret in
// the cluster's own namespace, or a VSphereClusterIdentity — whose Secret lives in CAPV's namespace
// and which the cluster's namespace must be allowed to use.
func (r *Reconciler) vsphereIdentity(ctx context.Context, vc *unstructured.Unstructured) (*infra.VSphereIdentity, error) {
	kind, _, _ := unstructured.NestedString(vc.Object, "spec", "identityRef", "kind")
	name, _, _ := unstructured.NestedString(vc.Object, "spec", "identityRef", "name")
	secretNS, secretName := vc.GetNamespace(), name
	key := "Secret/" + vc.GetNamespace() + "/" + name
	switch kind {
	case "Secret":
	case "VSphereClusterIdentity":
		id, err := r.identityObject(ctx, schema.GroupVersionKind{Group: capvGroup, Version: "v1beta1", Kind: kind}, name)
		if err != nil {
			return nil, err
		}
		ready, _, _ := unstructured.NestedBool(id.Object, "status", "ready")
		capv := func(allowed any, _ string, nsLabels map[string]string) (bool, error) {
			return diff.CAPVAllows(allowed, ready, nsLabels)
		}
		if err := r.allowed(ctx, id, vc.GetNamespace(), capv); err != nil {
			return nil, fmt.Errorf("VSphereClusterIdentity %s: %w", name, err)
		}
		secretName, _, _ = unstructured.NestedString(id.Object, "spec", "secretName")
		secretNS = r.opts.IdentityNamespace
		key = "VSphereClusterIdentity/" + name
	default:
		return nil, errors.New("spec.identityRef names no Secret or VSphereClusterIdentity; driftd cannot log in to its vCenter")
	}
	secret := &corev1.Secret{}
	if err := r.deps.Client.Get(ctx, client.ObjectKey{Namespace: secretNS, Name: secretName}, secret); err != nil {
		return nil, fmt.Errorf("reading the identity Secret %s/%s: %w", secretNS, secretName, err)
	}
	return &infra.VSphereIdentity{Key: key, Username: string(secret.Data["username"]), Password: string(secret.Data["password"])}, nil
}

func (r *Reconciler) identityObject(ctx context.Context, gvk schema.GroupVersionKind, name string) (*unstructured.Unstructured, error) {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	if err := r.deps.Client.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, name, err)
	}
	return obj, nil
}

// allowed checks an identity's spec.allowedNamespaces for namespace with its provider's rule.
func (r *Reconciler) allowed(ctx context.Context, identity *unstructured.Unstructured, namespace string,
	rule func(allowed any, namespace string, nsLabels map[string]string) (bool, error)) error {
	allowed, _, _ := unstructured.NestedFieldNoCopy(identity.Object, "spec", "allowedNamespaces")
	ns := &corev1.Namespace{}
	if err := r.deps.Client.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	ok, err := rule(allowed, namespace, ns.Labels)
	if err != nil {
		return err
	}
	if !ok {
		return errNotAllowed
	}
	return nil
}
