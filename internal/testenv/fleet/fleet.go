// Package fleet builds fleet repositories as a platform team writes them, from the files in its
// testdata/: an AWS cluster (testdata/aws, one cluster named as asked), the development fleet of
// Cluster API's in-memory provider (testdata/capi: a cluster spelled out, a ClusterClass and a
// cluster built from it), and generated fleets of any size for the benchmarks. e2e, capi, bench
// and the demo take their fleets from here, so a fixture is written once.
//
// A fleet lives in the folder "fleet" of its repository (driftd's --path fleet), with a
// kustomization.yaml that sets the namespace and lists the Namespace and the resources.
package fleet

import (
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
)

//go:embed testdata
var testdata embed.FS

// Dir is the folder of the repository a fleet lives in: driftd's --path.
const Dir = "fleet"

// Read returns a file of testdata/ (such as "capi/dev1.yaml").
func Read(name string) string {
	b, err := testdata.ReadFile(path.Join("testdata", name))
	if err != nil {
		panic(fmt.Sprintf("fleet: no testdata/%s: %v", name, err))
	}
	return string(b)
}

// AWSCluster is an AWS cluster named name as two files: the cluster (Cluster, AWSCluster,
// KubeadmControlPlane <name>-cp of 3 and its AWSMachineTemplate) and its workers (MachineDeployment
// <name>-md-0 of 3 labelled pool: md-0, its AWSMachineTemplate and KubeadmConfigTemplate, and a
// MachineHealthCheck).
func AWSCluster(name string) (cluster, workers string) {
	return strings.ReplaceAll(Read("aws/cluster.yaml"), "NAME", name), strings.ReplaceAll(Read("aws/workers.yaml"), "NAME", name)
}

// Fleet is a fleet folder being written: its namespace, its resources in order, and other files.
type Fleet struct {
	namespace string
	resources []string
	files     map[string]string
}

// New is an empty fleet of namespace ns: its kustomization and its Namespace.
func New(ns string) *Fleet {
	return &Fleet{namespace: ns, files: map[string]string{}}
}

// Add writes a resource file of the fleet folder (name relative to it) and lists it in the
// kustomization.
func (f *Fleet) Add(name, content string) *Fleet {
	f.resources = append(f.resources, name)
	f.files[name] = content
	return f
}

// AddAWSCluster adds the AWS cluster name (AWSCluster) as one resource file, <file>.
func (f *Fleet) AddAWSCluster(file, name string) *Fleet {
	c, w := AWSCluster(name)
	return f.Add(file, c+"---\n"+w)
}

// File writes a file of the fleet folder that the kustomization does not list (a patch, a
// generator's input).
func (f *Fleet) File(name, content string) *Fleet {
	f.files[name] = content
	return f
}

// Files are the repository's files, by path: fleet/kustomization.yaml, fleet/namespace.yaml and
// the fleet's files.
func (f *Fleet) Files() map[string]string {
	out := make(map[string]string, len(f.files)+2)
	for name, content := range f.files {
		out[Dir+"/"+name] = content
	}
	out[Dir+"/kustomization.yaml"] = Kustomization(f.namespace, f.resources...)
	out[Dir+"/namespace.yaml"] = Namespace(f.namespace)
	return out
}

// Prod is a fleet of one AWS cluster, prod, in namespace ns: cluster.yaml and workers.yaml as
// AWSCluster("prod") writes them.
func Prod(ns string) *Fleet {
	c, w := AWSCluster("prod")
	return New(ns).Add("cluster.yaml", c).Add("workers.yaml", w)
}

// AWS is the repository of Prod(ns).
func AWS(ns string) map[string]string { return Prod(ns).Files() }

// Kustomization is a fleet folder's kustomization.yaml: the namespace ns, its Namespace
// (namespace.yaml) and the resources.
func Kustomization(ns string, resources ...string) string {
	return "namespace: " + ns + "\nresources:\n- namespace.yaml\n- " + strings.Join(resources, "\n- ") + "\n"
}

// Namespace is the Namespace ns as a fleet repository holds it.
func Namespace(ns string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"
}

// DevClusters is the repository of testdata/capi, the development fleet of namespace fleet-dev
// run by Cluster API's in-memory provider: dev1 (a kubeadm control plane of 3 and a
// MachineDeployment of 2 with a MachineHealthCheck), the ClusterClass in-memory and cc1 built
// from it.
func DevClusters() map[string]string {
	out := map[string]string{}
	err := fs.WalkDir(testdata, "testdata/capi", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := testdata.ReadFile(p)
		out[Dir+"/"+strings.TrimPrefix(p, "testdata/capi/")] = string(b)
		return err
	})
	if err != nil {
		panic(err)
	}
	return out
}

// Generated is a fleet of n AWS clusters c0000, c0001, … in namespace ns, one folder each, with
// no Namespace (the benchmarks create it): its files and all its objects as one YAML stream.
func Generated(ns string, n int) (files map[string]string, objects string) {
	files = map[string]string{}
	var kust, all strings.Builder
	kust.WriteString("namespace: " + ns + "\nresources:\n")
	for i := range n {
		name := fmt.Sprintf("c%04d", i)
		c, w := AWSCluster(name)
		files[Dir+"/"+name+"/cluster.yaml"] = c + "---\n" + w
		fmt.Fprintf(&kust, "- %s/cluster.yaml\n", name)
		all.WriteString(c + "---\n" + w + "---\n")
	}
	files[Dir+"/kustomization.yaml"] = kust.String()
	return files, all.String()
}

// ReadDir reads the files below dir, by path relative to it (a repository on disk, such as
// examples/fleet-repo), to commit as a user would.
func ReadDir(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	return out, err
}

// Merge returns the files of every map, later ones winning.
func Merge(files ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		maps.Copy(out, f)
	}
	return out
}

// Namespaced is a fleet of n AWS clusters c00000, c00001, … as a platform team at scale writes it:
// each cluster in a folder and a Namespace of its own (its kustomization sets it), with its CNI as a
// ConfigMap and the ClusterResourceSet that installs it — 11 objects a cluster. The fleet folder's
// kustomization lists the clusters' folders.
func Namespaced(n int) map[string]string {
	files := map[string]string{}
	var kust strings.Builder
	kust.WriteString("resources:\n")
	for i := range n {
		name := fmt.Sprintf("c%05d", i)
		c, w := AWSCluster(name)
		dir := Dir + "/" + name + "/"
		files[dir+"kustomization.yaml"] = Kustomization(name, "cluster.yaml", "workers.yaml", "cni.yaml")
		files[dir+"namespace.yaml"] = Namespace(name)
		files[dir+"cluster.yaml"] = c
		files[dir+"workers.yaml"] = w
		files[dir+"cni.yaml"] = strings.ReplaceAll(Read("aws/cni.yaml"), "NAME", name)
		fmt.Fprintf(&kust, "- %s\n", name)
	}
	files[Dir+"/kustomization.yaml"] = kust.String()
	return files
}
