package testenv

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
)

// crdModule is a module whose CRD folders the test bed installs.
type crdModule struct {
	Path    string
	Version string
	Dirs    []string
}

// CRDModules are the providers whose real CRDs the test bed installs, at pinned versions. They are
// read from the Go module cache at test time and never copied into the repository. Cluster API's
// pin matches go.mod (a test checks it); CAPA's and CAPV's Go code is not a dependency of driftd.
var CRDModules = []crdModule{
	{Path: "sigs.k8s.io/cluster-api", Version: "v1.14.2", Dirs: []string{
		"core/config/crd/bases",
		"bootstrap/kubeadm/config/crd/bases",
		"controlplane/kubeadm/config/crd/bases",
	}},
	{Path: "sigs.k8s.io/cluster-api-provider-aws/v2", Version: "v2.13.0", Dirs: []string{"config/crd/bases"}},
	{Path: "sigs.k8s.io/cluster-api-provider-vsphere", Version: "v1.14.0", Dirs: []string{"config/default/crd/bases"}},
}

var crdDirs = sync.OnceValues(func() ([]string, error) {
	var dirs []string
	for _, m := range CRDModules {
		dir, err := moduleDir(m.Path, m.Version)
		if err != nil {
			return nil, err
		}
		for _, d := range m.Dirs {
			dirs = append(dirs, filepath.Join(dir, d))
		}
	}
	return dirs, nil
})

// CRDDirectories returns the CRD folders of CRDModules in the module cache, downloading the
// modules through the Go module proxy the first time.
func CRDDirectories() ([]string, error) { return crdDirs() }

// moduleDir returns the module cache folder of path@version (`go mod download -json`).
func moduleDir(path, version string) (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", path+"@"+version).Output()
	var info struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &info); jsonErr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", path, version, err, info.Error)
	}
	return info.Dir, nil
}
