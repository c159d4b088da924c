// Package capi runs driftd against Cluster API's own controllers and webhooks: core (with
// ClusterClass topologies), the kubeadm bootstrap and control plane providers, and the development
// provider's in-memory backend, which fakes each workload cluster's API server, etcd and Nodes. The
// CAPI-less packages (test/e2e) keep testing driftd against the CRDs alone.
package capi

import (
	"testing"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var env *testenv.CAPI

// drv runs driftd's commands and reads what they did.
var drv *driver.Driver

func TestMain(m *testing.M) {
	testenv.MainCAPI(m, func(c *testenv.CAPI) { env, drv = c, driver.New(c.Env) })
}
