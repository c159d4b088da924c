// Package egress holds the daemon's side of the network boundary: Go's default HTTP transport
// refuses every request (DenyDefaultTransport), so a library that would reach out on its own —
// kustomize fetching a remote file, a plugin — cannot, and every client driftd uses on purpose
// (git, AWS, vSphere, inventory endpoints) is built with a transport of its own (NewTransport).
package egress

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// refusing is an HTTP transport that sends nothing.
type refusing struct{}

// ErrDefaultTransport is wrapped by every error of Go's default HTTP client once
// DenyDefaultTransport ran.
var ErrDefaultTransport = fmt.Errorf("driftd sends no request through Go's default HTTP client: each of its clients has a transport of its own")

func (refusing) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	u := *req.URL
	u.User = nil
	return nil, fmt.Errorf("%s %s refused: %w", req.Method, u.String(), ErrDefaultTransport)
}

var denyOnce sync.Once

// DenyDefaultTransport makes Go's default HTTP transport and client refuse every request, naming
// its URL. A library that fetches on its own (kustomize's remote files, a plugin) then cannot; the
// clients driftd uses on purpose are built with NewTransport and are not affected. It is called
// once at start, before any client is built.
func DenyDefaultTransport() {
	denyOnce.Do(func() {
		http.DefaultTransport = refusing{}
		http.DefaultClient.Transport = refusing{}
	})
}

// NewTransport returns a transport of its own for one of driftd's clients, with the settings of
// Go's default transport (proxy from the environment, dial and TLS timeouts, HTTP/2).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}
