// Package e2e runs driftd's commands in-process against the test bed: a real API server with the
// Cluster API CRDs and fleet repositories served by real git servers on loopback.
package e2e

import (
	"testing"

	"github.com/driftd/driftd/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, func(e *testenv.Env) { env = e })
}
