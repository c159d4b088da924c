// Package engine runs driftd's cycle: fetch the source, render it, read the live objects, have
// diff decide, have apply correct and report announce. It also re-checks a single object when a
// watch says it changed, so an out-of-band edit is seen within seconds.
//
// It owns the order of those steps, the safety rules that span them (no write after a source,
// render or inventory failure; an empty render refused; nothing orphaned in a partial render) and
// the per-object memo that makes an unchanged cycle cost no API request: the result for
// (desired content hash, live uid + generation + labels/annotations) is kept, so an object is
// dry-run again only when Git or the live object changed.
//
// It holds no wiring: cmd/driftd (through internal/cli) gives it a source, a reader for live
// objects (the informer cache in `run`, the API in `plan`), a client for dry-runs and writes, and
// the reporters.
package engine
