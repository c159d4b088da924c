package infra

import (
	"path"
	"strings"
)

// FolderHolds reports whether the inventory folder p is the folder f (a full inventory path, or a
// folder name as a VSphereMachine may give it) or lies under it.
func FolderHolds(f, p string) bool {
	f = strings.TrimSuffix(f, "/")
	if f == "" {
		return false
	}
	if strings.HasPrefix(f, "/") {
		return p == f || strings.HasPrefix(p, f+"/")
	}
	return path.Base(p) == f || strings.Contains(p+"/", "/"+f+"/")
}

// FolderVisible reports whether the folder f (as FolderHolds takes it) is among the visible
// inventory paths.
func FolderVisible(f string, visible map[string]bool) bool {
	for p := range visible {
		if FolderHolds(f, p) {
			return true
		}
	}
	return false
}
