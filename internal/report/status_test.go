package report

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/diff"
)

func TestSummaryStaysWellUnderAConfigMapsLimitWhateverTheErrors(t *testing.T) {
	errs := make([]string, 10000)
	for i := range errs {
		errs[i] = fmt.Sprintf("fleet/cluster-%d.yaml: MachineDeployment/fleet/md-%d: dry run: %s", i, i, strings.Repeat("x", 2000))
	}
	findings := []diff.Finding{{Class: diff.ClassModified, Cluster: "prod", Action: diff.ActionApply}}
	sum := Summarize("main@sha1:abc", findings, errs)
	body, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 64<<10 {
		t.Errorf("the summary of 10,000 errors is %d bytes; a ConfigMap holds at most 1 MiB and this must stay far below", len(body))
	}
	if sum.ErrorCount != 10000 || len(sum.Errors) != MaxErrors || sum.Counts["prod"][diff.ClassModified] != 1 {
		t.Errorf("summary: %d of %d errors kept, counts %v", len(sum.Errors), sum.ErrorCount, sum.Counts)
	}
	if !strings.HasPrefix(sum.Errors[0], "fleet/cluster-0.yaml") || len(sum.Errors[0]) > MaxErrorLength {
		t.Errorf("first error %q… (%d bytes): want the first, cut to %d", sum.Errors[0][:40], len(sum.Errors[0]), MaxErrorLength)
	}
}
