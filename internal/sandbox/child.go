package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/egress"
	"github.com/driftd/driftd/internal/render"
)

// envChild names a process a render child. The parent sets it; nothing else should.
const envChild = "DRIFTD_RENDER_CHILD"

// envTestHook lets a test make the child misbehave (block, allocate) when the checkout holds a
// given file. It is read only by test binaries (testing.Testing), so the driftd binary has no
// such hook.
const envTestHook = "DRIFTD_RENDER_TEST_HOOK"

// renderNice is how many nice values a render in the background runs below the daemon: under
// CPU contention its threads get about a tenth of what the daemon's do.
const renderNice = 10

// request is what the parent asks of a child, on its standard input.
type request struct {
	Root   string        `json:"root,omitempty"`
	Path   string        `json:"path,omitempty"`
	Limits render.Limits `json:"limits"`
	// Background asks the child to yield the CPU (renderNice): the daemon serves corrections
	// from an earlier render meanwhile. A render with nothing before it is what the daemon
	// waits for, and runs at the daemon's own priority.
	Background bool `json:"background,omitempty"`
	// Probe asks the child to try what the sandbox refuses (a request to this URL through the
	// default client, a connection to its host, a program) and to say what happened.
	Probe string `json:"probe,omitempty"`
}

// message is one line the child writes on its standard output.
type message struct {
	// Hello opens the stream: the child is a render child, and whether its filter is on.
	Hello *hello `json:"hello,omitempty"`
	// Read names a file the render read.
	Read string `json:"read,omitempty"`
	// Object is one rendered object and its file.
	Object json.RawMessage `json:"object,omitempty"`
	File   string          `json:"file,omitempty"`
	// Done closes the stream.
	Done *done `json:"done,omitempty"`
	// Probe is the answer to a probe.
	Probe *ProbeResult `json:"probeResult,omitempty"`
}

type hello struct {
	Child   string `json:"child"`
	Seccomp string `json:"seccomp"`
}

type done struct {
	Errors  []string `json:"errors,omitempty"`
	Partial bool     `json:"partial,omitempty"`
	Empty   bool     `json:"empty,omitempty"`
	// Failed is the render's error when nothing could be rendered.
	Failed string `json:"failed,omitempty"`
}

// ProbeResult says what the sandbox refused when the child tried.
type ProbeResult struct {
	// Seccomp is "on", or why the kernel filter is not.
	Seccomp string `json:"seccomp"`
	// HTTP, Dial and Exec are the errors of a request through the default client, a TCP
	// connection and a program start; "" means it went through.
	HTTP string `json:"http"`
	Dial string `json:"dial"`
	Exec string `json:"exec"`
}

// Holds reports whether every attempt was refused.
func (p ProbeResult) Holds() bool { return p.HTTP != "" && p.Dial != "" && p.Exec != "" }

// RunChildIfAsked turns this process into a render child when its parent started it as one, and
// never returns then. main calls it first thing, and so does every TestMain of a package whose
// tests render through the sandbox (testenv.Main does).
func RunChildIfAsked() {
	if os.Getenv(envChild) != "1" {
		return
	}
	os.Exit(child(os.Stdin, os.Stdout))
}

func child(in io.Reader, out io.Writer) int {
	// The child goes first when memory runs out: the kernel's OOM killer takes it, not the daemon.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	egress.DenyDefaultTransport()
	seccomp := "on"
	if err := confine(); err != nil {
		seccomp = "off: " + err.Error()
	}
	w := bufio.NewWriterSize(out, 1<<16)
	enc := json.NewEncoder(w)
	var mu sync.Mutex // the render's workers tell what they read while objects go out
	send := func(m message) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
		if m.Object == nil {
			_ = w.Flush() // the parent learns at once where the render is
		}
	}
	send(message{Hello: &hello{Child: "driftd-render", Seccomp: seccomp}})
	var req request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		send(message{Done: &done{Failed: "reading the render request: " + err.Error()}})
		_ = w.Flush()
		return 1
	}
	if req.Background {
		// A render beside a serving daemon yields the CPU: it is throughput, a correction is
		// latency.
		_ = lowerPriority(renderNice)
	}
	if req.Probe != "" {
		res := probe(req.Probe)
		res.Seccomp = seccomp
		send(message{Probe: &res})
		_ = w.Flush()
		return 0
	}
	limits := req.Limits.WithDefaults()
	// The budget is the process' resident memory; Go's limit counts only the memory Go manages,
	// and the binary's own pages come on top of it (tens of MiB): a quarter of the budget is left
	// for them. At nine tenths, 10,000 clusters rendered at 388 MiB of a 384 MiB budget.
	debug.SetMemoryLimit(limits.MaxMemory / 4 * 3)
	// The render's live heap is small (it streams) and its budget is its own: a collection every
	// five times the live heap, not two, and the limit above still holds it to the budget
	// (BenchmarkSandboxRender, 1,000 clusters: the child's CPU 3.3 s -> 2.2 s, its peak RSS
	// 111 -> 114 MiB).
	debug.SetGCPercent(400)
	testHook(req.Root)
	var failed []error // objects that cannot be sent
	emit := func(o render.Object) {
		js, err := o.MarshalJSON()
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %s %s: %w", o.File, o.GetKind(), o.GetName(), err))
			return
		}
		send(message{Object: js, File: o.File})
	}
	res, err := render.Render(req.Root, req.Path, render.Options{Limits: limits, Progress: func(f string) { send(message{Read: f}) }, Emit: emit})
	if res != nil && len(failed) > 0 {
		res.Errors, res.Partial = append(res.Errors, failed...), true
	}
	switch {
	case errors.Is(err, render.ErrEmptyRender):
		d := &done{Empty: true}
		if res != nil {
			d.Errors, d.Partial = texts(res.Errors), res.Partial
		}
		send(message{Done: d})
	case err != nil:
		send(message{Done: &done{Failed: err.Error()}})
	default:
		// The objects went out as they were rendered (emit).
		send(message{Done: &done{Errors: texts(res.Errors), Partial: res.Partial}})
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}

func texts(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

// probe tries what the sandbox must refuse.
func probe(target string) ProbeResult {
	var res ProbeResult
	client := &http.Client{Timeout: 5 * time.Second}
	if resp, err := client.Get(target); err != nil {
		res.HTTP = err.Error()
	} else {
		_ = resp.Body.Close()
	}
	host := target
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		host = u.Host
	}
	if conn, err := net.DialTimeout("tcp", host, 5*time.Second); err != nil {
		res.Dial = err.Error()
	} else {
		_ = conn.Close()
	}
	self, err := os.Executable()
	if err != nil {
		self = "/bin/sh"
	}
	cmd := exec.Command(self, "version")
	cmd.Env = []string{}
	if err := cmd.Run(); err != nil {
		res.Exec = err.Error()
	}
	return res
}

// testHook makes a test binary's render child block, spin or allocate without end, or sleep 3 s
// before it renders, when the checkout holds the file the hook names ("block:NAME", "spin:NAME",
// "allocate:NAME", "sleep:NAME"). The driftd binary is never a test binary, so it has no such
// behaviour.
func testHook(root string) {
	if !testing.Testing() {
		return
	}
	hook := os.Getenv(envTestHook)
	if hook == "" {
		return
	}
	what, name, _ := strings.Cut(hook, ":")
	if _, err := os.Stat(filepath.Join(root, name)); err != nil {
		return
	}
	switch what {
	case "block":
		// The test learns the child got this far (its request read, its priority set) from a
		// file beside the one that asked for the block.
		_ = os.WriteFile(filepath.Join(root, name+".reached"), nil, 0o600)
		select {}
	case "sleep":
		time.Sleep(3 * time.Second)
	case "spin":
		for range runtime.GOMAXPROCS(0) - 1 {
			go spin()
		}
		spin()
	case "allocate":
		var hold [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i)
			}
			hold = append(hold, b)
			time.Sleep(time.Millisecond)
		}
	}
}

// spin takes a CPU without end.
func spin() {
	for {
	}
}
