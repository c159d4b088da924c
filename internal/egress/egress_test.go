package egress

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// listener counts the connections it accepts.
func listener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return "http://" + ln.Addr().String() + "/latest/meta-data/", &n
}

// TestDenyDefaultTransport: once denied, Go's default client refuses every request and names it.
func TestDenyDefaultTransport(t *testing.T) {
	url, conns := listener(t)
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
	if n := conns.Load(); n != 1 {
		t.Errorf("the listener saw %d connections, want the one of the client with its own transport", n)
	}
}
