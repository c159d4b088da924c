// Package deploy runs driftd the way a platform team runs it: the binary out of the image `make
// image` builds, with config/'s RBAC, ServiceAccount, configuration and Deployment arguments,
// against an empty management cluster; and it checks what config/ ships (every overlay and
// component renders, the alert rules and the dashboard use only metrics driftd serves).
package deploy

import (
	"testing"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var env *testenv.Env

// drv runs driftd's commands and reads what they did.
var drv *driver.Driver

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env, drv = e, driver.New(e) }) }
