package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// A webhook's denial can carry a multi-line diff of the object: the table keeps one line per
// finding and says where the rest is.
func TestPlanTableKeepsOneLinePerFinding(t *testing.T) {
	res := &report.Result{Revision: "main@sha1:abc", Findings: []diff.Finding{
		{Class: diff.ClassModified, Cluster: "dev1", Action: diff.ActionBlocked, File: "fleet/dev1.yaml",
			Object: diff.ObjectRef{Kind: "DevMachineTemplate", Namespace: "fleet-dev", Name: "dev1-md-0"},
			Reason: "the API server rejects it: spec.template.spec field is immutable. Diff: v1beta2.DevMachineSpec{\n  ProviderID: \"\",\n-  StartupDuration: 3s\n+  StartupDuration: 4s\n}"},
		{Class: diff.ClassModified, Cluster: "dev1", Action: diff.ActionApply,
			Object: diff.ObjectRef{Kind: "MachineDeployment", Namespace: "fleet-dev", Name: "dev1-md-0"},
			Fields: []diff.Field{{Path: "/spec/replicas", Desired: int64(2), Live: int64(5)}}},
	}}
	var out bytes.Buffer
	if err := writeTable(&out, res); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	// header line, blank line, column titles, two rows
	if len(lines) != 5 {
		t.Fatalf("table has %d lines, want 5:\n%s", len(lines), out.String())
	}
	blocked := lines[3]
	if !strings.Contains(blocked, "field is immutable. Diff: v1beta2.DevMachineSpec{ … (all of it: plan -o json)") ||
		strings.Contains(blocked, "StartupDuration") {
		t.Errorf("blocked row = %q, want the message's first line and a pointer to -o json", blocked)
	}
	if !strings.Contains(lines[4], "/spec/replicas desired 2 live 5") {
		t.Errorf("second row = %q", lines[4])
	}
}
