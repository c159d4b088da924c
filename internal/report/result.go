package report

import "github.com/driftd/driftd/internal/diff"

// Result is the outcome of a cycle (of the spec layer, or of the cloud): what `plan` and
// `run --once` print.
type Result struct {
	// Revision is the revision compared with, "<ref>@sha1:<sha>".
	Revision string `json:"revision"`
	// Findings are every drifted object, ordered by cluster, kind, namespace and name.
	Findings []diff.Finding `json:"findings"`
	// Errors are what went wrong without stopping the cycle: source and render trouble, objects
	// that could not be checked or corrected. Each names its file or object.
	Errors []error `json:"-"`
	// Complete: the cycle went through the whole fleet within its deadline (objects it could not
	// check are in Errors).
	Complete bool `json:"-"`

	corrected map[diff.Key]bool
}

// Remaining are the findings the cycle did not correct.
func (r *Result) Remaining() []diff.Finding {
	var out []diff.Finding
	for _, f := range r.Findings {
		if !r.corrected[f.Object.Key()] {
			out = append(out, f)
		}
	}
	return out
}

// Merge appends other's findings and errors to r and returns r.
func (r *Result) Merge(other *Result) *Result {
	r.Findings = append(r.Findings, other.Findings...)
	r.Errors = append(r.Errors, other.Errors...)
	for k := range other.corrected {
		r.MarkCorrected(k)
	}
	return r
}

// MarkCorrected records that the drift of k was corrected.
func (r *Result) MarkCorrected(k diff.Key) {
	if r.corrected == nil {
		r.corrected = map[diff.Key]bool{}
	}
	r.corrected[k] = true
}

// Drifted reports whether any finding calls for attention (ignored ones do not).
func (r *Result) Drifted() bool {
	for _, f := range r.Findings {
		if f.Action != diff.ActionIgnored {
			return true
		}
	}
	return false
}
