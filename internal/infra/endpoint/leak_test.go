package endpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	inventoryv1 "github.com/driftd/driftd/api/inventory/v1"
)

const secretToken = "tok-LEAKME-0123456789abcdef"

// echoing is an endpoint (or a proxy in front of one) that answers with the request it got,
// headers included, wrapped in bytes a log or an Event must not carry.
func echoing(t *testing.T, status int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.WriteString("upstream error\x1b[31m\x00\xff\xfe ")
		_ = r.Header.Write(&b)
		b.WriteString(strings.Repeat("é", 600))
		w.WriteHeader(status)
		_, _ = w.Write(b.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func checkMessage(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Contains(msg, secretToken) {
		t.Errorf("the error shows the token: %q", msg)
	}
	if !utf8.ValidString(msg) {
		t.Errorf("the error is not valid UTF-8: %q", msg)
	}
	for _, r := range msg {
		if unicode.IsControl(r) {
			t.Errorf("the error holds control character %U: %q", r, msg)
			break
		}
	}
	if len(msg) > 1024 {
		t.Errorf("the error is %d bytes", len(msg))
	}
}

// TestAnEndpointEchoingItsRequestLeaksNoToken: an error answer is quoted without the bearer token,
// printable and short, whatever bytes it holds.
func TestAnEndpointEchoingItsRequestLeaksNoToken(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusUnauthorized, http.StatusBadGateway} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := echoing(t, status)
			p := newProvider(t, Options{URL: srv.URL, TokenFile: tokenFile(t, secretToken)})
			snap, err := p.Snapshot(context.Background(), targets)
			checkMessage(t, err)
			for c, e := range snap.Unavailable {
				checkMessage(t, fmt.Errorf("%s: %w", c, e))
			}
			if !strings.Contains(err.Error(), "REDACTED") || !strings.Contains(err.Error(), "upstream error") {
				t.Errorf("the error does not keep what is safe to say: %q", err)
			}
		})
	}
}

// TestTheSnapshotCapHoldsAcrossPages: pages that each fit stay bounded together; past the cap the
// answer is incomplete and every cluster unavailable.
func TestTheSnapshotCapHoldsAcrossPages(t *testing.T) {
	big := strings.Repeat("x", 400<<10)
	pages := map[string]inventoryv1.SnapshotResponse{}
	for i := range 10 {
		next := fmt.Sprint(i + 1)
		if i == 9 {
			next = ""
		}
		pages[fmt.Sprint(i)] = inventoryv1.SnapshotResponse{NextPageToken: next, Complete: i == 9,
			Instances: []inventoryv1.Instance{inst(dev1, "m"+fmt.Sprint(i), inventoryv1.StateRunning)}}
		p := pages[fmt.Sprint(i)]
		p.Instances[0].Name = big
		pages[fmt.Sprint(i)] = p
	}
	pages[""] = pages["0"]
	e := &endpoint{pages: pages}
	srv := serve(t, e)
	p := newProvider(t, Options{URL: srv.URL, MaxSnapshotBytes: 2 << 20})
	snap, err := p.Snapshot(context.Background(), targets)
	if err == nil || !strings.Contains(err.Error(), "larger than 2 MiB") {
		t.Fatalf("Snapshot = %v, want the cap named", err)
	}
	if snap.Complete || len(snap.Unavailable) != len(targets) {
		t.Errorf("complete %v, %d of %d clusters unavailable", snap.Complete, len(snap.Unavailable), len(targets))
	}
	if n := len(e.reqs); n > 6 {
		t.Errorf("%d pages read past the cap", n)
	}
}

// FuzzSnapshotAnswer feeds arbitrary bytes as an endpoint's answer, as a success and as an error:
// the reader never panics, never concludes from an answer it cannot read, and its errors never
// carry the token or unprintable bytes.
func FuzzSnapshotAnswer(f *testing.F) {
	ok, _ := json.Marshal(inventoryv1.SnapshotResponse{APIVersion: inventoryv1.APIVersion, Complete: true,
		Instances: []inventoryv1.Instance{inst(dev1, "m1", inventoryv1.StateRunning)}})
	f.Add(ok, 200)
	f.Add([]byte(`{"apiVersion":"inventory.driftd.io/v1","complete":true,"instances":[{"providerID":"in-memory://x","cluster":{"namespace":"fleet","name":"dev1"},"state":"gone"}]}`), 200)
	f.Add([]byte(`{"apiVersion":"inventory.driftd.io/v1","nextPageToken":"a"}`), 200)
	f.Add([]byte(`{"message":"Authorization: Bearer `+secretToken+`"}`), 500)
	f.Add([]byte("\xff\xfe\x00"+secretToken), 503)
	f.Add([]byte(`{"apiVersion":"inventory.driftd.io/v1","complete":true,"pools":[{"name":"p","cluster":{"namespace":"fleet","name":"dev2"},"min":3,"max":1}]}`), 200)
	type answer struct {
		body   []byte
		status int
	}
	var current atomic.Pointer[answer]
	// One server and one reader for the whole run: the fuzzer calls the function many thousand
	// times in a process.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := current.Load()
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	defer srv.Close()
	dir, err := os.MkdirTemp("", "fuzz-token")
	if err != nil {
		f.Fatal(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(secretToken), 0o600); err != nil {
		f.Fatal(err)
	}
	p, err := New(Options{Name: "in-memory", URL: srv.URL, TokenFile: file, Timeout: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if status < 200 || status > 599 {
			status = 500
		}
		current.Store(&answer{body: body, status: status})
		snap, err := p.Snapshot(context.Background(), targets)
		if err != nil {
			checkMessage(t, err)
			if snap.Complete {
				t.Error("a failed answer is complete")
			}
			return
		}
		if status != 200 {
			t.Errorf("status %d read as an answer", status)
		}
		for _, e := range snap.Errors {
			if strings.Contains(e.Error(), secretToken) {
				t.Errorf("an error shows the token: %v", e)
			}
		}
	})
}
