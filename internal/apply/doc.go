// Package apply is driftd's one small writer: server-side apply of the objects that drifted, in
// staged order, with the field manager "driftd" and ownership forced, through fluxcd/pkg/ssa; and
// deletes of orphans where pruning is opted in.
//
// It owns how a write is made and in what order. It does not decide what to write (package diff
// does) and never writes an object it was not handed; ssa's own compare additionally skips any
// object whose dry-run shows no change, so no resourceVersion is bumped needlessly.
package apply
