package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/render"
)

// Renderer renders checkouts in child processes. Its zero value is usable: limits at their
// defaults, the child started from this process' own executable.
type Renderer struct {
	// Limits bound each render; zero fields take render's defaults.
	Limits render.Limits
	// Executable is the binary started as the child; os.Executable() when empty.
	Executable string
}

// Error is a render the sandbox stopped or that died.
type Error struct {
	// Reason is what stopped it: "deadline", "memory", "crashed".
	Reason string
	msg    string
}

func (e *Error) Error() string { return e.msg }

// backgroundWallFactor bounds a render in the background on the clock: it may take
// --render-timeout of CPU time, and at most this many times --render-timeout in all, so that one
// blocked on nothing is still stopped. A variable for the sandbox's tests only.
var backgroundWallFactor time.Duration = 3

// Render renders folder path of the checkout at root in a child process and returns what the
// in-process render.Render would, each object as the JSON it crossed in (render.Encoded), or an
// *Error when the child had to be stopped (deadline, memory) or died.
//
// A render without one before it is what the daemon waits for: it runs at the daemon's priority
// and its deadline (Limits.Timeout) is on the clock. A render in the background (the daemon
// serves corrections from an earlier one) runs renderNice below the daemon, so its time on the
// clock is the daemon's and the API server's to take: its deadline counts the CPU time it got,
// with backgroundWallFactor times the deadline on the clock for one that waits on nothing.
func (r Renderer) Render(ctx context.Context, root, path string, background bool) (*render.Encoded, error) {
	limits := r.Limits.WithDefaults()
	run, err := r.start(ctx, request{Root: root, Path: path, Limits: limits, Background: background}, limits)
	if err != nil {
		return nil, err
	}
	defer run.stop()
	res := &render.Encoded{}
	var last *done
	for {
		var m message
		if err := run.dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, run.fail(fmt.Errorf("reading the render's output: %w", err))
		}
		switch {
		case m.Read != "":
			run.read(m.Read)
		case m.Object != nil:
			// Kept as it came (the decoder copied it): the engine decodes one object at a time
			// and keeps its own compact form. One that does not decode is reported then, with
			// its file, like an object of an unknown kind.
			if len(res.Objects) >= limits.MaxObjects {
				return nil, run.fail(fmt.Errorf("more than %d objects rendered (--render-max-objects)", limits.MaxObjects))
			}
			res.Objects = append(res.Objects, render.EncodedObject{JSON: m.Object, File: m.File})
		case m.Done != nil:
			last = m.Done
		}
	}
	if err := run.wait(); err != nil || last == nil {
		return nil, run.fail(err)
	}
	for _, e := range last.Errors {
		res.Errors = append(res.Errors, errors.New(e))
	}
	res.Partial = last.Partial
	switch {
	case last.Failed != "":
		return nil, errors.New(last.Failed)
	case last.Empty:
		return res, render.ErrEmptyRender
	}
	return res, nil
}

// Probe starts a child that tries to reach target (through Go's default HTTP client and a plain
// connection) and to start a program, and says what the sandbox let through.
func (r Renderer) Probe(ctx context.Context, target string) (ProbeResult, error) {
	limits := r.Limits.WithDefaults()
	limits.Timeout = time.Minute
	run, err := r.start(ctx, request{Probe: target}, limits)
	if err != nil {
		return ProbeResult{}, err
	}
	defer run.stop()
	var res *ProbeResult
	for {
		var m message
		if err := run.dec.Decode(&m); err != nil {
			break
		}
		if m.Probe != nil {
			res = m.Probe
		}
	}
	if err := run.wait(); err != nil || res == nil {
		return ProbeResult{}, run.fail(err)
	}
	return *res, nil
}

// running is one child process.
type running struct {
	cmd    *exec.Cmd
	dec    *json.Decoder
	stderr *head
	limits render.Limits
	// background: the deadline counts CPU time (Render).
	background bool
	started    time.Time
	ctx        context.Context
	cancel     context.CancelFunc

	mu      sync.Mutex
	files   int
	last    string
	killed  *Error // why the watchdog killed it, but for where the render was
	peakRSS int64
	waited  bool
	waitErr error
}

func (r Renderer) start(ctx context.Context, req request, limits render.Limits) (*running, error) {
	exe := r.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding driftd's own executable to render in: %w", err)
		}
	}
	if os.Getenv(envChild) != "" {
		return nil, errors.New("a render child does not start another")
	}
	wall := limits.Timeout
	if req.Background {
		wall *= backgroundWallFactor
	}
	cctx, cancel := context.WithTimeout(ctx, wall)
	var args []string
	if testing.Testing() {
		// A test binary that forgot RunChildIfAsked would run its tests again: run none.
		args = []string{"-test.run=^$", "-test.bench=^$", "-test.fuzz=^$"}
	}
	cmd := exec.CommandContext(cctx, exe, args...)
	// Nothing of the daemon's environment: no credentials (AWS, git), no PATH for a program to be
	// found on, no proxy settings.
	cmd.Env = []string{envChild + "=1", "GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0))}
	if hook := os.Getenv(envTestHook); hook != "" && testing.Testing() {
		cmd.Env = append(cmd.Env, envTestHook+"="+hook)
	}
	cmd.Dir = os.TempDir()
	js, err := json.Marshal(req)
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stdin = bytes.NewReader(js)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	errTail := &head{max: 4096}
	cmd.Stderr = errTail
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting the render process: %w", err)
	}
	run := &running{cmd: cmd, dec: json.NewDecoder(stdout), stderr: errTail, limits: limits, background: req.Background, started: time.Now(), ctx: cctx, cancel: cancel}
	go run.watch()
	var m message
	if err := run.dec.Decode(&m); err != nil || m.Hello == nil || m.Hello.Child != "driftd-render" {
		run.stop()
		run.mu.Lock()
		stopped := run.killed != nil
		run.mu.Unlock()
		if stopped || run.ctx.Err() != nil {
			return nil, run.fail(err)
		}
		return nil, fmt.Errorf("%s did not start as a render child (does its main call sandbox.RunChildIfAsked?): %s", exe, strings.TrimSpace(errTail.String()))
	}
	return run, nil
}

// watch kills the child when it holds more memory than its budget, or, in the background, when
// it has had its deadline's worth of CPU time.
func (run *running) watch() {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pid := run.cmd.Process.Pid
	for {
		select {
		case <-run.ctx.Done():
			return
		case <-tick.C:
		}
		var stop *Error
		if rss, ok := residentBytes(pid); ok {
			run.mu.Lock()
			run.peakRSS = max(run.peakRSS, rss)
			run.mu.Unlock()
			if rss > run.limits.MaxMemory {
				stop = &Error{Reason: "memory", msg: fmt.Sprintf("it held %s, more than its budget of %s (--render-max-memory)", mib(rss), mib(run.limits.MaxMemory))}
			}
		}
		if run.background && stop == nil {
			if cpu, ok := cpuTime(pid); ok && cpu >= run.limits.Timeout {
				stop = &Error{Reason: "deadline", msg: fmt.Sprintf("it had %s of CPU time, its deadline in the background (--render-timeout)", cpu)}
			}
		}
		if stop == nil {
			continue
		}
		run.mu.Lock()
		if run.killed == nil {
			run.killed = stop
		}
		run.mu.Unlock()
		_ = run.cmd.Process.Kill()
		return
	}
}

func (run *running) read(file string) {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.files++
	run.last = file
}

func (run *running) wait() error {
	run.mu.Lock()
	if run.waited {
		defer run.mu.Unlock()
		return run.waitErr
	}
	run.mu.Unlock()
	err := run.cmd.Wait()
	run.mu.Lock()
	run.waited, run.waitErr = true, err
	run.mu.Unlock()
	return err
}

func (run *running) stop() {
	run.cancel()
	_ = run.wait()
}

// fail turns what went wrong with the child into an error that says where the render was.
func (run *running) fail(err error) error {
	run.cancel()
	_ = run.wait()
	run.mu.Lock()
	defer run.mu.Unlock()
	where := fmt.Sprintf("%d files read", run.files)
	if run.last != "" {
		where += ", the last " + run.last
	}
	took := time.Since(run.started).Round(time.Millisecond)
	switch {
	case run.killed != nil:
		return &Error{Reason: run.killed.Reason, msg: fmt.Sprintf("the render was stopped after %s: %s (%s)", took, run.killed.msg, where)}
	case errors.Is(run.ctx.Err(), context.DeadlineExceeded) && run.background:
		return &Error{Reason: "deadline", msg: fmt.Sprintf("the render was stopped at its deadline of %s on the clock in the background (%d× --render-timeout) (%s)", backgroundWallFactor*run.limits.Timeout, int(backgroundWallFactor), where)}
	case errors.Is(run.ctx.Err(), context.DeadlineExceeded):
		return &Error{Reason: "deadline", msg: fmt.Sprintf("the render was stopped at its deadline of %s (--render-timeout) (%s)", run.limits.Timeout, where)}
	case run.ctx.Err() != nil:
		return fmt.Errorf("the render was cancelled (%s): %w", where, run.ctx.Err())
	}
	msg := "the render process ended without an answer"
	if err != nil {
		msg = fmt.Sprintf("the render process failed (%v)", err)
	}
	if t := strings.TrimSpace(run.stderr.String()); t != "" {
		msg += ": " + firstLines(t, 3)
	}
	return &Error{Reason: "crashed", msg: fmt.Sprintf("%s (%s)", msg, where)}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "; ")
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// residentBytes reads a process' resident set size from /proc.
func residentBytes(pid int) (int64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// cpuTime reads the CPU time a process has had (user and system, all its threads) from /proc.
func cpuTime(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	return parseCPUTime(string(data))
}

// parseCPUTime reads utime and stime (fields 14 and 15, in USER_HZ ticks, which Linux fixes at
// 100 a second for /proc) from a /proc/PID/stat line. The command name (field 2) is in
// parentheses and may hold spaces and parentheses: the fields are counted after its last ')'.
func parseCPUTime(stat string) (time.Duration, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	// After ")": state is field 3, so utime (14) and stime (15) are the 12th and 13th.
	fields := strings.Fields(stat[i+1:])
	if len(fields) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * (time.Second / userHZ), true
}

// userHZ is the unit of /proc's CPU times on Linux.
const userHZ = 100

// head keeps the first max bytes written to it (a crash's message comes first).
type head struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *head) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - t.buf.Len(); room > 0 {
		t.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (t *head) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
