package engine

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/apply"
)

// VerifiedStore remembers, across restarts, the last commit of the fleet repository verified under
// --verify-signatures, in the ConfigMap driftd-source-<owner> of driftd's namespace: a restarted
// driftd must not accept an older signed commit either. It is kept per repository and ref, so a
// driftd pointed at another repository starts afresh.
type VerifiedStore struct {
	client     client.Client
	namespace  string
	name       string
	repository string
}

// NewVerifiedStore returns the store of owner's last verified commit of repository (its URL without
// credentials, and the ref) in namespace.
func NewVerifiedStore(c client.Client, namespace, owner, repository string) *VerifiedStore {
	return &VerifiedStore{client: c, namespace: namespace, name: "driftd-source-" + owner, repository: repository}
}

// Load returns the last verified commit, or "" when none was stored for this repository.
func (s *VerifiedStore) Load(ctx context.Context) (string, error) {
	cm := &corev1.ConfigMap{}
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: s.name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("reading ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	if cm.Data["repository"] != s.repository {
		return "", nil
	}
	return cm.Data["verifiedCommit"], nil
}

// Save stores commit as the last verified one.
func (s *VerifiedStore) Save(ctx context.Context, commit string) error {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: map[string]string{"app.kubernetes.io/name": "driftd"}},
		Data:       map[string]string{"repository": s.repository, "verifiedCommit": commit},
	}
	if err := s.client.Patch(ctx, cm, client.Apply, client.FieldOwner(apply.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing ConfigMap %s/%s: %w", s.namespace, s.name, err)
	}
	return nil
}
