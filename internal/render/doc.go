// Package render builds the desired objects of the fleet from a checkout with kustomize.
//
// The checkout is copied into an in-memory filesystem first, so a build cannot read anything
// outside the repository: symlinks that leave it and "../" escapes are refused, remote bases are
// refused, exec and Go plugins are off. Every object carries the file it came from.
//
// A broken part of the fleet does not hide the rest: when the build fails, render finds the
// resources entries that fail on their own, drops them and builds the rest, reporting each dropped
// entry with its file and reason and marking the result Partial.
//
// render owns turning files into objects. It does not talk to the API server (kinds are checked
// by diff and apply) and does not decide what an empty or partial render means for writes.
package render
