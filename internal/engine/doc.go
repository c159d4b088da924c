// Package engine runs driftd: fetch the source, render it, read the live objects, have diff
// decide, have apply correct and report announce.
//
// Fetching and rendering publish an immutable snapshot of the desired state, outside any lock the
// per-object path needs. Each object is then reconciled on its own — live object → memo → diff →
// act — by Reconcile, a controller-runtime reconciler keyed by object: a full cycle goes through
// every object stage by stage (Namespaces and CRDs first, then what lives in them) and looks for
// orphans last; a watch event or a transient failure puts one object on the workqueue, which
// retries with backoff (the one scheduler of retries; without a workqueue, run --once, the cycle
// retries a few times itself). Only a permanent verdict of the API server (invalid, denied) is
// remembered until Git or the live object changes, and returned as reconcile.TerminalError.
// Every decision is diff's: the engine gathers the situation (paused, deleting, rejected, held,
// pending) and acts on the Decision it gets back.
//
// It owns the order of those steps, the safety rules that span them (no write after a source,
// render or inventory failure; an empty render refused; no orphan search in a partial render;
// pruning last, limited, and never one part of a Cluster at a time; nothing written for a cluster
// being deleted; contested fields held with backoff; a deadline on every cycle and reconcile; a
// kind driftd may not watch reported and skipped) and the per-object memo that makes an unchanged
// cycle cost no API request: the result for (desired content hash, live uid + generation +
// labels/annotations) is kept, so an object is dry-run again only when Git or the live object
// changed.
//
// It holds no wiring: cmd/driftd (through internal/cli) gives it a source, a reader for live
// objects (the informer cache behind Watches in `run`, the API in `plan`), a client for dry-runs
// and writes, and the reporters.
package engine
