// Package testbed proves the test bed itself: the real control plane with the real CRDs, moto and
// the vSphere simulator behave as every other integration test of driftd relies on.
package testbed

import (
	"os"
	"testing"

	"github.com/driftd/driftd/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		startControlPlaneAndHang()
	}
	testenv.Main(m, func(e *testenv.Env) { env = e })
}
