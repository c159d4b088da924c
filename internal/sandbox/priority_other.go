//go:build !linux

package sandbox

// lowerPriority does nothing off Linux.
func lowerPriority(int) error { return nil }
