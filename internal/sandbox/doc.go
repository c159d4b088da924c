// Package sandbox keeps what the fleet repository says away from the network, from programs and
// from the daemon's memory.
//
// The render (kustomize over a repository many people commit to) runs in a child process of
// driftd — the same binary, started again with an environment that names it a render child — as
// Argo CD's repo-server runs manifest generation apart. The child has no credentials in its
// environment, no PATH, a seccomp filter that refuses every program start and every network socket,
// an HTTP client that refuses every request, and the kernel's permission to be the first process
// killed under memory pressure. The parent gives it a deadline and a memory budget and kills it at
// either: a render that hangs or balloons costs a failed revision (RenderFailed), never the daemon.
//
// The daemon's own side of the boundary (Go's default HTTP transport refuses every request) is
// internal/egress.
//
// sandbox owns process isolation; it does not render (internal/render does) and does
// not decide what a failed render means for writes (internal/engine does).
package sandbox
