package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/version"
)

func TestVersionPrintsVersion(t *testing.T) {
	version.Version = "v9.8.7-test"
	t.Cleanup(func() { version.Version = "" })
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), []string{"version"}, &out, &errOut)
	if code != ExitOK {
		t.Fatalf("exit code = %d, want %d; stderr: %s", code, ExitOK, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "driftd v9.8.7-test ") {
		t.Errorf("version output = %q, want it to start with %q", out.String(), "driftd v9.8.7-test ")
	}
}

func TestUnknownCommandIsAnError(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Execute(context.Background(), []string{"frobnicate"}, &out, &errOut); code != ExitError {
		t.Fatalf("exit code = %d, want %d", code, ExitError)
	}
	if !strings.Contains(errOut.String(), "frobnicate") {
		t.Errorf("stderr = %q, want it to name the unknown command", errOut.String())
	}
}
