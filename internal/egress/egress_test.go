package egress

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// TestDenyDefaultTransport: once denied, Go's default client refuses every request and names it.
func TestDenyDefaultTransport(t *testing.T) {
	l := fixture.Listen(t)
	url := l.URL
	before := http.DefaultTransport
	DenyDefaultTransport()
	t.Cleanup(func() { http.DefaultTransport, http.DefaultClient.Transport = before, nil; denyOnce = *new(sync.Once) })
	_, err := http.Get(url)
	if !errors.Is(err, ErrDefaultTransport) || !strings.Contains(err.Error(), url) {
		t.Errorf("http.Get = %v, want a refusal naming %s", err, url)
	}
	resp, err := (&http.Client{Transport: NewTransport()}).Get(url)
	if err != nil {
		t.Fatalf("a client with its own transport: %v", err)
	}
	_ = resp.Body.Close()
	if n := l.Connections(); n != 1 {
		t.Errorf("the listener saw %d connections, want the one of the client with its own transport", n)
	}
}
