// Package faults injects what a management cluster, a Git server and driftd's own process do in
// production — a kill -9 in the middle of a prune, an API server gone for a minute, every request
// slow, watches cut, driftd's own ConfigMaps corrupted or deleted — while driftd is busy, and
// measures what driftd wrote that it should not have (from an API proxy's log of every request):
// none. driftd runs as deployed: the binary out of the image, a process of its own. docs/faults.md
// lists every fault and the test that injects it.
package faults

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
)

var env *testenv.Env

// drv runs driftd's commands and reads what they did.
var drv *driver.Driver

func TestMain(m *testing.M) { testenv.Main(m, func(e *testenv.Env) { env, drv = e, driver.New(e) }) }

// bookkeeping selects driftd's writes of its own state in its namespace ns: its status, memo,
// inventory and verified-commit ConfigMaps and its lease (Events are not writes, see
// testenv.Writes).
func bookkeeping(ns string) func(testenv.Request) bool {
	return func(r testenv.Request) bool {
		inNS := strings.HasPrefix(r.Path, "/api/v1/namespaces/"+ns+"/configmaps") ||
			strings.HasPrefix(r.Path, "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases")
		return inNS && strings.HasPrefix(r.Name, "driftd-")
	}
}

// unintended are the writes that reached the API server (an answer came back) and that allowed
// does not select.
func unintended(p *testenv.APIProxy, allowed ...func(testenv.Request) bool) []string {
	var out []string
	for _, r := range p.Requests(testenv.Writes) {
		if r.Status == 0 {
			continue // never reached the API server
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a(r)
		}
		if !ok {
			out = append(out, fmt.Sprintf("%s %s → %d", r.Method, r.Path, r.Status))
		}
	}
	return out
}

// writes lists the writes through p that reached the API server, in order.
func writes(p *testenv.APIProxy) []string {
	var out []string
	for _, r := range p.Requests(testenv.Writes) {
		if r.Status != 0 {
			out = append(out, fmt.Sprintf("%s %s", r.Method, r.Path))
		}
	}
	return out
}

// deleteOf selects the deletions of the ConfigMaps names in ns.
func deleteOf(ns string, names ...string) func(testenv.Request) bool {
	return func(r testenv.Request) bool {
		if r.Method != http.MethodDelete || !strings.HasPrefix(r.Path, "/api/v1/namespaces/"+ns+"/configmaps/") {
			return false
		}
		for _, n := range names {
			if r.Name == n {
				return true
			}
		}
		return false
	}
}
