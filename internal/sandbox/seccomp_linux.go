//go:build linux

package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// confine installs a seccomp filter on every thread of the process that refuses what a render never
// needs and an attacker would: starting a program (execve, execveat), opening a network socket
// (socket for any family but AF_UNIX) and io_uring (which could open one without socket(2)). The
// kernel holds it for the rest of the process' life; nothing the process does can lift it.
func confine() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		deny = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, K: k, Jt: jt, Jf: jf}
	}
	// struct seccomp_data: nr at 0, arch at 4, args from 16 (the low half of args[0] on a
	// little-endian machine, which both supported architectures are).
	filter := []unix.SockFilter{
		stmt(ld, 4),                              // 0: arch
		jump(jeq, arch, 1, 0),                    // 1: ours → 3
		stmt(ret, deny),                          // 2: any other ABI: refused
		stmt(ld, 0),                              // 3: syscall number
		jump(jge, 0x40000000, 5, 0),              // 4: x32 ABI → 10
		jump(jeq, unix.SYS_EXECVE, 4, 0),         // 5 → 10
		jump(jeq, unix.SYS_EXECVEAT, 3, 0),       // 6 → 10
		jump(jeq, unix.SYS_IO_URING_SETUP, 2, 0), // 7 → 10
		jump(jeq, unix.SYS_SOCKET, 2, 0),         // 8 → 11
		stmt(ret, unix.SECCOMP_RET_ALLOW),        // 9
		stmt(ret, deny),                          // 10
		stmt(ld, 16),                             // 11: socket's family
		jump(jeq, unix.AF_UNIX, 0, 1),            // 12: AF_UNIX → 13, else 14
		stmt(ret, unix.SECCOMP_RET_ALLOW),        // 13
		stmt(ret, deny),                          // 14
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return nil
}
