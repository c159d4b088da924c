package diff

import (
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/driftd/driftd/internal/infra"
)

// Layer is where drift was found.
type Layer string

const (
	// LayerSpec is drift between Git and the live objects of the management cluster.
	LayerSpec Layer = "spec"
	// LayerCloud is drift between the live objects and the cloud inventory.
	LayerCloud Layer = "cloud"
)

// Class names the kind of drift.
type Class string

const (
	// ClassMissing: rendered from Git, absent in the cluster.
	ClassMissing Class = "Missing"
	// ClassModified: a field set in Git (or owned by driftd) differs live.
	ClassModified Class = "Modified"
	// ClassOrphaned: carries driftd's ownership label and is no longer rendered.
	ClassOrphaned Class = "Orphaned"
)

// Action is what driftd does, or would do, about a finding.
type Action string

const (
	// ActionCreate creates a missing object with server-side apply.
	ActionCreate Action = "create"
	// ActionApply re-applies the desired object with server-side apply.
	ActionApply Action = "apply"
	// ActionDelete deletes an orphaned object (only with pruning opted in).
	ActionDelete Action = "delete"
	// ActionReplace replaces a drifted Machine.
	ActionReplace Action = "replace"
	// ActionReport only reports: detect mode, `driftd.io/mode: detect`, or a class driftd never corrects.
	ActionReport Action = "report"
	// ActionIgnored is drift on an object with `driftd.io/reconcile: disabled`: shown, never acted on,
	// never announced.
	ActionIgnored Action = "ignored"
	// ActionBlocked is a correction driftd may not make now (a paused cluster, a budget); Reason says why.
	ActionBlocked Action = "blocked"
	// ActionHeld is a change that replaces Machines waiting for its cluster's turn in a paced
	// rollout (--max-rolling-clusters, the rollout waves); Reason names what it waits for.
	ActionHeld Action = "held"
)

// Blocker is why a correction is blocked: one of a fixed set, so that code branches on it and
// never on a Reason's words (which are for people).
type Blocker string

const (
	// BlockerClusterPaused: the object's cluster is paused (in Git or live).
	BlockerClusterPaused Blocker = "ClusterPaused"
	// BlockerRejected: the API server rejects the object as Git has it (a verdict, see Situation.Rejected).
	BlockerRejected Blocker = "Rejected"
	// BlockerContested: another writer keeps setting the field; the correction is held (see Contest).
	BlockerContested Blocker = "Contested"
	// BlockerMachinePaused: the Machine carries Cluster API's pause annotation.
	BlockerMachinePaused Blocker = "MachinePaused"
	// BlockerSkipRemediation: the Machine opts out of remediation.
	BlockerSkipRemediation Blocker = "SkipRemediation"
	// BlockerNoReplacer: nothing would create the Machine's replacement (no MachineHealthCheck
	// selects it and no MachineSet owns it, or it is a control plane Machine no MachineHealthCheck selects).
	BlockerNoReplacer Blocker = "NoReplacer"
	// BlockerInventorySuspect: the inventory's answer looks wrong (the breaker tripped).
	BlockerInventorySuspect Blocker = "InventorySuspect"
	// BlockerBudget: the Machine's pool still recovers from replacements in flight.
	BlockerBudget Blocker = "Budget"
	// BlockerFleetBudget: the fleet's cap on replacements in flight is reached.
	BlockerFleetBudget Blocker = "FleetBudget"
	// BlockerPruneLimit: the revision deletes more than the prune limits allow.
	BlockerPruneLimit Blocker = "PruneLimit"
)

// Decision is what driftd does about a finding: the action, and when it is not a plain
// correction, why (Blocker for a blocked one, Reason in words for every one).
type Decision struct {
	Action  Action
	Blocker Blocker
	Reason  string
}

func corrected(a Action, reason string) Decision { return Decision{Action: a, Reason: reason} }
func reported(reason string) Decision            { return Decision{Action: ActionReport, Reason: reason} }
func blocked(b Blocker, reason string) Decision {
	return Decision{Action: ActionBlocked, Blocker: b, Reason: reason}
}

// Decided sets f's action, blocker and reason to d.
func (f *Finding) Decided(d Decision) {
	f.Action, f.Blocker, f.Reason = d.Action, d.Blocker, d.Reason
}

// Corrects reports whether the action writes to the cluster or the cloud.
func (a Action) Corrects() bool {
	return a == ActionCreate || a == ActionApply || a == ActionDelete || a == ActionReplace
}

// ObjectRef names a Kubernetes object.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// RefOf returns the reference of obj.
func RefOf(obj *unstructured.Unstructured) ObjectRef {
	return ObjectRef{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// String names the object as Key.String does: "Kind/namespace/name".
func (r ObjectRef) String() string { return keyOfRef(r).String() }

// Key is the key of the object r names.
func (r ObjectRef) Key() Key { return keyOfRef(r) }

// PoolSizes are the sizes a node pool is restored to: Git's desired count (nil to leave it, when
// another writer owns it), its minimum and maximum.
type PoolSizes struct {
	Desired  *int32
	Min, Max int32
}

// Field is one differing field of a Modified object.
type Field struct {
	// Path is the field's RFC 6901 JSON pointer, e.g. /spec/replicas.
	Path string `json:"path"`
	// Desired is the value Git asks for (as the server would store it); nil when Git removes it.
	Desired any `json:"desired"`
	// Live is the value in the cluster; nil when absent.
	Live any `json:"live"`
	// Manager is the field manager that set the live value, from metadata.managedFields.
	Manager string `json:"manager,omitempty"`
	// Operation is that manager's operation: Apply or Update.
	Operation string `json:"operation,omitempty"`
	// Time is when that manager last wrote the object.
	Time *time.Time `json:"time,omitempty"`
}

// Finding is one drifted object (or instance).
type Finding struct {
	Layer   Layer     `json:"layer"`
	Class   Class     `json:"class"`
	Cluster string    `json:"cluster,omitempty"`
	Object  ObjectRef `json:"object"`
	// File is the repository file the desired object came from (spec layer).
	File string `json:"file,omitempty"`
	// Fields are the differing fields: of a Modified object, or for the cloud layer the
	// infrastructure spec's value (desired) against the instance's or group's (live).
	Fields []Field `json:"fields,omitempty"`
	// Instance is the cloud instance of a cloud finding.
	Instance *infra.Instance `json:"instance,omitempty"`
	// Pool is the node pool of a NodePoolMismatch.
	Pool *infra.NodePool `json:"pool,omitempty"`
	// Restore are the sizes a NodePoolMismatch restores the pool to.
	Restore *PoolSizes `json:"-"`
	// Action is what driftd does about it.
	Action Action `json:"action"`
	// Reason explains a report, ignored or blocked action.
	Reason string `json:"reason,omitempty"`
	// Blocker is why a blocked action waits, for code to branch on (Reason says it in words; the
	// plan's JSON keeps the reason only, as it always has).
	Blocker Blocker `json:"-"`
	// Rollout is what applying Git's object does to Machines, by Cluster API's rules (for the
	// objects Cluster API makes Machines from).
	Rollout *Rollout `json:"rollout,omitempty"`
}
