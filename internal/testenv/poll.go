package testenv

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// Eventually polls cond until it holds, failing the test after timeout (fixture.Eventually, which
// packages below testenv use too).
var Eventually = fixture.Eventually

// EventuallyEvery is Eventually asking cond every period (fixture.EventuallyEvery).
var EventuallyEvery = fixture.EventuallyEvery

// MetricValue reads one sample from a Prometheus text endpoint at addr (host:port): the first
// series of the metric whose labels include those given in name (`name{a="b"}`; the series may
// have more). A missing metric or an unreachable endpoint reads as -1, so callers can poll until
// the value moves.
func MetricValue(addr, name string) float64 {
	v, n := metricSamples(addr, name, true)
	if n == 0 {
		return -1
	}
	return v
}

// MetricSum adds up every series of the metric whose labels include those given in name; -1 when
// the endpoint cannot be reached, 0 when no series matches.
func MetricSum(addr, name string) float64 {
	v, n := metricSamples(addr, name, false)
	if n < 0 {
		return -1
	}
	return v
}

func metricSamples(addr, name string, first bool) (float64, int) {
	base, labels, _ := strings.Cut(name, "{")
	var want []string
	for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
		if l != "" {
			want = append(want, l)
		}
	}
	resp, err := HTTP.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	sum, n := 0.0, 0
	for sc.Scan() {
		line := sc.Text()
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != base && !strings.HasPrefix(series, base+"{")) {
			continue
		}
		match := true
		for _, l := range want {
			match = match && strings.Contains(series, l)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if !match || err != nil {
			continue
		}
		if first {
			return v, 1
		}
		sum += v
		n++
	}
	return sum, n
}

// WaitForCycles waits until the driftd serving metrics on addr has finished n more full cycles
// than it had when called: the deterministic way to give it the chance to do something wrong.
func WaitForCycles(tb testing.TB, addr string, n int, timeout time.Duration) {
	tb.Helper()
	const cycles = "driftd_cycle_duration_seconds_count"
	start := MetricValue(addr, cycles)
	Eventually(tb, timeout, strconv.Itoa(n)+" more driftd cycles", func() bool {
		return MetricValue(addr, cycles) >= max(start, 0)+float64(n)
	})
}

// FreeAddr returns a free loopback address (host:port) for a server a test starts.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}
