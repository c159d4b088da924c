package testbed

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
)

// TestControlPlaneDiesWithAKilledTestBinary starts a test binary that starts its own control
// plane, kills it with SIGKILL (as a test timeout or a crash would: no cleanup runs) and checks
// that its kube-apiserver goes away too.
func TestControlPlaneDiesWithAKilledTestBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var host string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if h, ok := strings.CutPrefix(sc.Text(), "APISERVER "); ok {
			host = h
			break
		}
	}
	if host == "" {
		_ = cmd.Process.Kill()
		t.Fatalf("the helper printed no API server address: %v", cmd.Wait())
	}
	if !answers(host) {
		t.Fatalf("the helper's API server at %s does not answer while the helper runs", host)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testenv.Eventually(t, time.Minute, "the API server at "+host+" to go away with its killed test binary", func() bool {
		return !answers(host)
	})
}

// helperEnv makes the test binary start a control plane, print its address and wait to be
// killed, instead of running the tests (see TestMain).
const helperEnv = "DRIFTD_TESTBED_HELPER"

// startControlPlaneAndHang is the process TestControlPlaneDiesWithAKilledTestBinary kills.
func startControlPlaneAndHang() {
	e, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("APISERVER " + e.Config.Host)
	select {} // until killed
}

// answers reports whether anything answers HTTP(S) at host.
func answers(host string) bool {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	resp, err := c.Get(strings.TrimSuffix(host, "/") + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return true
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // probing liveness only
