package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// InstallNamespace applies driftd's own Namespace as a user installs it — config/default's
// namespace.yaml with kubectl's field manager — under name (a test gives each daemon its own, so
// that they share no lease or status ConfigMap). A fleet's namespaces come from its repository,
// never from here.
func (e *Env) InstallNamespace(ctx context.Context, name string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	path := filepath.Join(root, "config", "default", "namespace.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, err := DecodeObjects(data)
	if err != nil || len(objs) != 1 || objs[0].GetKind() != "Namespace" {
		return fmt.Errorf("%s: want one Namespace (%v)", path, err)
	}
	objs[0].SetName(name)
	return e.Client.Patch(ctx, objs[0], client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership)
}
