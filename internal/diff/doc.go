// Package diff decides drift. Its functions are pure: they take desired objects (as the API
// server would store them), live objects, rules and the time, and return findings; they hold no
// client and write nothing.
//
// It owns the vocabulary of a finding (Layer, Class, Action), the field-by-field comparison with
// RFC 6901 JSON pointers, who set each live value (from metadata.managedFields), ignore rules and
// the built-in ones, and which action a finding calls for under the modes, the per-object
// annotations and a paused cluster. It does not fetch, render, dry-run or apply: the engine feeds it
// and the applier acts on what it returns.
package diff
