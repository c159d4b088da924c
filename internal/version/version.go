// Package version holds driftd's version, set at link time by the Makefile and falling back to
// the module version Go recorded in the binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is driftd's release, set with -ldflags "-X github.com/driftd/driftd/internal/version.Version=v1.2.3".
var Version = ""

// Commit is the git commit driftd was built from, set like Version.
var Commit = ""

// Get returns the version: the linked-in Version, else the module version of the build, else "dev".
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// String is the line `driftd version` prints.
func String() string {
	s := "driftd " + Get()
	if Commit != "" {
		s += " (" + Commit + ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
