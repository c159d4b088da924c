// Package source fetches the fleet repository with go-git: a clone the first time, then an
// incremental, shallow where possible, fetch into a cache folder, checked out at the configured
// branch, tag or commit.
//
// It owns getting a revision onto disk and naming it ("<ref>@sha1:<sha>"). It does not read the
// files it checks out (package render does) and never decides what a failed fetch means: the
// caller keeps its last good revision.
//
// Supported locations: https:// and http:// (basic auth or a token read from a file or the
// environment), ssh:// and scp-style user@host:path (a private key and a required known_hosts
// file), file:// and a local path. Local repositories are read in-process, without a git binary.
package source
