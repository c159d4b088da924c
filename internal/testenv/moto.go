package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Moto is a running moto server: real EC2 and Auto Scaling APIs on a loopback port.
type Moto struct {
	// Endpoint is the server's URL, e.g. http://127.0.0.1:41234; it serves every AWS service moto knows.
	Endpoint string

	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
}

// StartMoto starts `moto_server` (or `python3 -m moto.server`) on a free loopback port and waits
// until it answers.
func StartMoto() (*Moto, error) {
	name, args := "moto_server", []string{}
	if _, err := exec.LookPath(name); err != nil {
		name, args = "python3", []string{"-m", "moto.server"}
	}
	var lastErr error
	for range 3 { // the free port can be taken between Listen and moto's bind; try another
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		m, err := startMoto(name, append(args, "-H", "127.0.0.1", "-p", strconv.Itoa(port)), port)
		if err == nil {
			return m, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startMoto(name string, args []string, port int) (*Moto, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = nil, nil // moto logs every request; keep test output readable
	cmd.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
	// Its own process group so Stop ends the shims and the Python process behind them; the parent
	// death signal so nothing outlives a killed test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting moto (%s): %w", name, err)
	}
	m := &Moto{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan error, 1)}
	go func() { m.done <- cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-m.done:
			return nil, fmt.Errorf("moto exited before it answered on %s: %v", m.Endpoint, err)
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := HTTP.Get(m.Endpoint + "/moto-api/data.json")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
	}
	m.Stop()
	return nil, fmt.Errorf("moto did not answer on %s within a minute", m.Endpoint)
}

// Stop ends the server and every process it started. It is safe to call more than once.
func (m *Moto) Stop() {
	m.stopOnce.Do(func() {
		if m.cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
		}
	})
}

// Reset drops every resource moto holds, so that a test starts from an empty cloud.
func (m *Moto) Reset(ctx context.Context) error {
	return post(ctx, m.Endpoint+"/moto-api/reset", http.StatusOK)
}

// AWSConfig returns an SDK configuration for region that sends every call to the server, with
// fixed test credentials.
func (m *Moto) AWSConfig(ctx context.Context, region string) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx,
		config.WithRegion(region),
		config.WithBaseEndpoint(m.Endpoint),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
	)
}

// AWSConfigAs returns AWSConfig acting in the account of roleARN, through sts:AssumeRole: moto
// keeps each account's resources apart, as AWS does.
func (m *Moto) AWSConfigAs(ctx context.Context, region, roleARN string) (aws.Config, error) {
	cfg, err := m.AWSConfig(ctx, region)
	if err != nil {
		return cfg, err
	}
	cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), roleARN))
	return cfg, nil
}

// RequireMoto starts a moto server for the test and stops it when the test ends. A moto that cannot
// start fails the test, with what to install.
func RequireMoto(tb testing.TB) *Moto {
	tb.Helper()
	m, err := StartMoto()
	if err != nil {
		Unavailable(tb, "moto server: %v", err)
	}
	tb.Cleanup(m.Stop)
	return m
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// UseFromEnvironment points the AWS SDK's standard variables at the server for the rest of the
// test (AWS_ENDPOINT_URL, fixed credentials, no instance metadata), as an emulator is used with any
// tool: the code under test needs no setting of its own.
func (m *Moto) UseFromEnvironment(tb testing.TB) {
	tb.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	tb.Setenv("AWS_ACCESS_KEY_ID", "testing")
	tb.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	tb.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// AWSFaults is a proxy in front of moto that answers chosen requests with an AWS error, as AWS's
// API endpoint would: see Moto.Faults.
type AWSFaults struct {
	mu     sync.Mutex
	match  func(body []byte) bool
	status int
	code   string
	left   int
	hits   int
}

// Faults puts a proxy in front of moto and points AWS_ENDPOINT_URL at it for the rest of the test:
// the requests whose body match selects (the Query API of EC2 and Auto Scaling names its action
// there: Action=DescribeInstances&...) are answered with the error code at HTTP status, as AWS
// answers them (RequestLimitExceeded at 503, InternalError at 500), the next left times (for ever
// when left is negative); everything else reaches moto.
func (m *Moto) Faults(tb testing.TB, status int, code string, left int, match func(body []byte) bool) *AWSFaults {
	tb.Helper()
	moto, err := url.Parse(m.Endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(moto)
	rp.Transport = HTTP.Transport
	f := &AWSFaults{match: match, status: status, code: code, left: left}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		hit := f.left != 0 && f.match(body)
		if hit {
			f.left--
			f.hits++
		}
		f.mu.Unlock()
		if !hit {
			rp.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(f.status)
		_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>injected by the test</Message></Error></Errors><RequestID>fault</RequestID></Response>`, f.code)
	}))
	tb.Cleanup(srv.Close)
	tb.Setenv("AWS_ENDPOINT_URL", srv.URL)
	return f
}

// Hits is how many requests were answered with the error.
func (f *AWSFaults) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// Action selects the Query API requests of action.
func Action(action string) func(body []byte) bool {
	return func(body []byte) bool { return bytes.Contains(body, []byte("Action="+action+"&")) }
}
