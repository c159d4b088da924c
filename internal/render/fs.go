package render

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// loadTree copies the regular files of root (the checkout) into an in-memory filesystem rooted at
// "/". A symlink is followed only when its target lies inside root; one that leaves it is refused
// and reported, and the file it names is then simply absent for the build.
func loadTree(root string) (filesys.FileSystem, []error, error) {
	mem := filesys.MakeFsInMemory()
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, nil, err
	}
	var refused []error
	err = filepath.WalkDir(realRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(realRoot, path)
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return mem.MkdirAll(memPath(rel))
		}
		src := path
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(path)
			if err != nil || !inside(realRoot, target) {
				refused = append(refused, fmt.Errorf("%s: symlink points outside the repository; refused", rel))
				return nil
			}
			fi, err := os.Stat(target)
			if err != nil || fi.IsDir() {
				// A link to a folder inside the repository: that folder is copied on its own.
				return nil
			}
			src = target
		} else if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return mem.WriteFile(memPath(rel), data)
	})
	if err != nil {
		return nil, nil, err
	}
	return mem, refused, nil
}

func memPath(rel string) string { return "/" + filepath.ToSlash(rel) }

func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
