package report

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	"github.com/driftd/driftd/internal/diff"
)

// ReportingController is the reporting controller of every driftd Event.
const ReportingController = "driftd"

// Event reasons.
const (
	ReasonDriftDetected               = "DriftDetected"
	ReasonDriftCorrected              = "DriftCorrected"
	ReasonMachineReplacementRequested = "MachineReplacementRequested"
	ReasonCorrectionBlocked           = "CorrectionBlocked"
	ReasonCorrectionFailed            = "CorrectionFailed"
	ReasonSourceFetchFailed           = "SourceFetchFailed"
	ReasonSourceVerificationFailed    = "SourceVerificationFailed"
	ReasonRenderFailed                = "RenderFailed"
	ReasonEmptyRender                 = "EmptyRender"
	ReasonInventoryUnavailable        = "InventoryUnavailable"
	ReasonInventorySuspect            = "InventorySuspect"
	ReasonPruneBlocked                = "PruneBlocked"
	ReasonKindNotWatched              = "KindNotWatched"
	ReasonRolloutHeld                 = "RolloutHeld"
)

// maxNote is the longest note events.k8s.io/v1 accepts.
const maxNote = 1024

// Events writes driftd's Events. It decides nothing: what to announce, and when, is the Ledger's.
type Events struct {
	recorder events.EventRecorder
}

// NewEvents returns an Events writing through recorder; a nil recorder records nothing (plan).
func NewEvents(recorder events.EventRecorder) *Events {
	return &Events{recorder: recorder}
}

func (e *Events) detected(obj runtime.Object, f diff.Finding) {
	e.emit(obj, "Warning", ReasonDriftDetected, "Detect", Describe(f))
}

func (e *Events) corrected(obj runtime.Object, f diff.Finding) {
	note := fmt.Sprintf("%s corrected by %s", f.Class, f.Action)
	if len(f.Fields) > 0 {
		note += ": " + FieldList(f.Fields)
	}
	e.emit(obj, "Normal", ReasonDriftCorrected, "Correct", note)
}

func (e *Events) failed(obj runtime.Object, f diff.Finding, err error, hint string) {
	// The hint before the error, which may be long: a note holds 1 KiB.
	note := fmt.Sprintf("%s %s failed: %s", f.Class, correctionOf(f), Brief(err.Error()))
	if hint != "" {
		note = fmt.Sprintf("%s %s failed (hint: %s): %s", f.Class, correctionOf(f), hint, Brief(err.Error()))
	}
	e.emit(obj, "Warning", ReasonCorrectionFailed, "Correct", note)
}

// correctionOf names the correction a finding called for, also when it was blocked.
func correctionOf(f diff.Finding) string {
	if f.Action == diff.ActionBlocked {
		if f.Class == diff.ClassMissing {
			return string(diff.ActionCreate)
		}
		return string(diff.ActionApply)
	}
	return string(f.Action)
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// Warning records a Warning Event with reason on obj (source-level trouble on the status ConfigMap).
func (e *Events) Warning(obj runtime.Object, reason, note string) {
	e.emit(obj, "Warning", reason, "Reconcile", note)
}

func (e *Events) emit(obj runtime.Object, eventType, reason, action, note string) {
	if e.recorder == nil || obj == nil {
		return
	}
	note = Cut(note, maxNote)
	// The recorder formats its note with Sprintf: pass the text as an argument.
	e.recorder.Eventf(obj, nil, eventType, reason, action, "%s", note)
}

// Describe is the human sentence for a finding, used in Events and the table output.
func Describe(f diff.Finding) string {
	var sb strings.Builder
	sb.WriteString(string(f.Class))
	if f.Cluster != "" {
		sb.WriteString(" in cluster " + f.Cluster)
	}
	if f.File != "" {
		sb.WriteString(" (from " + f.File + ")")
	}
	if f.Instance != nil {
		sb.WriteString(fmt.Sprintf(": instance %s (%s)", f.Instance.ProviderID, orUnknown(f.Instance.State)))
	}
	if len(f.Fields) > 0 {
		sb.WriteString(": " + FieldList(f.Fields))
	}
	sb.WriteString("; action " + string(f.Action))
	if f.Reason != "" {
		sb.WriteString(" (" + f.Reason + ")")
	}
	return sb.String()
}

// FieldList describes fields as "path desired X live Y (set by manager, operation, time)", joined by "; ".
func FieldList(fields []diff.Field) string {
	parts := make([]string, 0, len(fields))
	for _, fd := range fields {
		s := fmt.Sprintf("%s desired %s live %s", fd.Path, value(fd.Desired), value(fd.Live))
		if fd.Manager != "" {
			s += " (set by " + fd.Manager
			if fd.Operation != "" {
				s += ", " + fd.Operation
			}
			if fd.Time != nil {
				s += ", " + fd.Time.UTC().Format("2006-01-02T15:04:05Z")
			}
			s += ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func value(v any) string {
	if v == nil {
		return "<absent>"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return Cut(string(b), 120)
}

// fingerprint identifies a drift: its class, action and the differing fields with their live values.
func fingerprint(f diff.Finding) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%s|", f.Class, f.Action)
	paths := make([]string, 0, len(f.Fields))
	for _, fd := range f.Fields {
		paths = append(paths, fd.Path+"="+value(fd.Live))
	}
	sort.Strings(paths)
	h.Write([]byte(strings.Join(paths, ",")))
	return h.Sum64()
}

func orUnknown(s string) string {
	if s == "" {
		return "state unknown"
	}
	return s
}
