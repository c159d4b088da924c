// Package bench measures driftd on a generated fleet against the test bed: the cost of a cycle in
// which nothing changed (against fluxcd/pkg/ssa's Diff over the same objects), the time from an
// out-of-band edit to its DriftDetected Event, and the peak memory of `driftd run`.
//
// `make bench` runs the benchmarks at fleet size 1,000 clusters (BENCH_CLUSTERS); `make test` runs
// the tests here on a small fleet.
package bench

import (
	"testing"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var env *testenv.Env

// drv runs driftd's commands and reads what they did.
var drv *driver.Driver

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env, drv = e, driver.New(e) }) }
