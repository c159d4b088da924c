// Package e2e runs driftd's commands in-process against the test bed: a real API server with the
// Cluster API CRDs and fleet repositories served by real git servers on loopback.
package e2e

import (
	"testing"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var env *testenv.Env

// drv runs driftd's commands and reads what they did.
var drv *driver.Driver

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env, drv = e, driver.New(e) }) }
