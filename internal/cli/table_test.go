package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/report"
)

// TestThePlanTableEscapesControlCharacters: a file name or a server's message is the repository's
// or a webhook's text; in the table it cannot clear the screen, move the cursor or forge a row.
func TestThePlanTableEscapesControlCharacters(t *testing.T) {
	res := &report.Result{Revision: "main@sha1:abc", Findings: []diff.Finding{{
		Layer: diff.LayerSpec, Class: diff.ClassModified, Cluster: "prod\x1b[2J",
		Object: diff.ObjectRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: "fleet", Name: "x"},
		File:   "fleet/\x1b[31mred\r.yaml", Action: diff.ActionBlocked, Reason: "denied\u202e by a webhook\x07",
	}}}
	var out bytes.Buffer
	if err := writeTable(&out, res); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, c := range []string{"\x1b", "\r", "\u202e", "\x07"} {
		if strings.Contains(s, c) {
			t.Errorf("the table holds %q:\n%s", c, s)
		}
	}
	if !strings.Contains(s, `fleet/\x1b[31mred\r.yaml`) || !strings.Contains(s, `prod\x1b[2J`) {
		t.Errorf("the table does not show the escaped names:\n%s", s)
	}
	if n := strings.Count(s, "\n"); n != 4 {
		t.Errorf("%d lines, want the revision, a blank, the header and one row:\n%s", n, s)
	}
}
