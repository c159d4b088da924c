//go:build !linux

package sandbox

import (
	"errors"
	"runtime"
)

// confine has no kernel filter to install outside Linux: the render child relies on its refusing
// HTTP transport and its empty environment there.
func confine() error { return errors.New("seccomp is a Linux feature; not on " + runtime.GOOS) }
