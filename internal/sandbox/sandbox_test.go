package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/testenv/fixture"
)

func md(name string) string {
	return fmt.Sprintf("apiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineDeployment\nmetadata:\n  name: %s\nspec:\n  clusterName: c\n  replicas: 1\n", name)
}

// TestTheRenderChildCannotReachTheNetworkOrRunAProgram: whatever the render's code does, the child
// it runs in can send no request through the default client, open no TCP connection and start no
// program: the listener sees nothing.
func TestTheRenderChildCannotReachTheNetworkOrRunAProgram(t *testing.T) {
	l := fixture.Listen(t)
	url := l.URL
	res, err := Renderer{}.Probe(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Connections(); n != 0 {
		t.Errorf("the listener saw %d connections from the render child", n)
	}
	if !strings.Contains(res.HTTP, "refused") || !strings.Contains(res.HTTP, url) {
		t.Errorf("the default client's error %q does not name the refused URL", res.HTTP)
	}
	if runtime.GOOS == "linux" {
		if res.Seccomp != "on" {
			t.Errorf("seccomp: %s", res.Seccomp)
		}
		if !strings.Contains(res.Dial, "operation not permitted") {
			t.Errorf("a TCP connection was not refused by the kernel: %q", res.Dial)
		}
		if !strings.Contains(res.Exec, "operation not permitted") {
			t.Errorf("a program start was not refused by the kernel: %q", res.Exec)
		}
	}
	if !res.Holds() {
		t.Errorf("the sandbox let something through: %+v", res)
	}
}

func objectNames(res *render.Result) []string {
	var out []string
	for _, o := range res.Objects {
		out = append(out, o.GetKind()+"/"+o.GetName()+" "+o.File)
	}
	sort.Strings(out)
	return out
}

// TestTheSandboxRendersWhatTheRenderDoes: the child's answer is the in-process render's, errors,
// partiality and empty renders included.
func TestTheSandboxRendersWhatTheRenderDoes(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"fleet/kustomization.yaml": "resources: [a.yaml, b.yaml, broken.yaml]\nnamespace: team\n",
		"fleet/a.yaml":             md("a"),
		"fleet/b.yaml":             md("b"),
		"fleet/broken.yaml":        "kind: [",
		"empty/kustomization.yaml": "resources: []\n",
	})
	want, err := render.Render(root, "fleet", render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := Renderer{}.Render(context.Background(), root, "fleet", false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := enc.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(objectNames(want), objectNames(got)); diff != "" {
		t.Errorf("objects (-in process +sandbox):\n%s", diff)
	}
	for i := range want.Objects {
		if diff := cmp.Diff(want.Objects[i].Object, got.Objects[i].Object); diff != "" {
			t.Errorf("%s (-in process +sandbox):\n%s", want.Objects[i].GetName(), diff)
		}
	}
	if got.Partial != want.Partial || fmt.Sprint(got.Errors) != fmt.Sprint(want.Errors) {
		t.Errorf("partial %v errors %v, want %v %v", got.Partial, got.Errors, want.Partial, want.Errors)
	}
	if _, err := (Renderer{}).Render(context.Background(), root, "empty", false); !errors.Is(err, render.ErrEmptyRender) {
		t.Errorf("an empty render = %v, want ErrEmptyRender", err)
	}
	if _, err := (Renderer{}).Render(context.Background(), root, "nope", false); err == nil || !strings.Contains(err.Error(), `path "nope"`) {
		t.Errorf("a missing path = %v", err)
	}
}

// TestARenderThatNeverReturnsIsStoppedAtItsDeadline and one that takes memory without end is
// stopped at its budget; each error says why and where the render was, and the next render works.
func TestARenderIsStoppedAtItsDeadlineAndItsMemoryBudget(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{"fleet/kustomization.yaml": "resources: [a.yaml]\n", "fleet/a.yaml": md("a"), "fleet/HANG": ""})
	for _, tt := range []struct {
		hook, reason, want string
		limits             render.Limits
	}{
		{"block:fleet/HANG", "deadline", "the render was stopped at its deadline of 2s (--render-timeout)", render.Limits{Timeout: 2 * time.Second}},
		{"allocate:fleet/HANG", "memory", "more than its budget of 128 MiB (--render-max-memory)", render.Limits{MaxMemory: 128 << 20}},
	} {
		t.Run(tt.reason, func(t *testing.T) {
			t.Setenv(envTestHook, tt.hook)
			_, err := Renderer{Limits: tt.limits}.Render(context.Background(), root, "fleet", false)
			var serr *Error
			if !errors.As(err, &serr) || serr.Reason != tt.reason || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render = %v, want %s: %q", err, tt.reason, tt.want)
			}
			t.Setenv(envTestHook, "")
			res, err := Renderer{Limits: tt.limits}.Render(context.Background(), root, "fleet", false)
			if err != nil || len(res.Objects) != 1 {
				t.Fatalf("the next render: %v", err)
			}
		})
	}
}

// TestABackgroundRenderIsTimedByTheCPUItGets: a render in the background yields the CPU, so its
// deadline counts the CPU time it had, not the clock: one that waits (here it sleeps 3 s, as it
// would waiting for a busy CPU) past a deadline of 2 s finishes in the background and is stopped
// in the foreground; one that spins is stopped once it has had the deadline's CPU time, well
// before the clock's bound; one blocked on nothing is stopped at backgroundWallFactor times the
// deadline on the clock.
func TestABackgroundRenderIsTimedByTheCPUItGets(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{"fleet/kustomization.yaml": "resources: [a.yaml]\n", "fleet/a.yaml": md("a"), "fleet/HANG": ""})
	limits := render.Limits{Timeout: 2 * time.Second}
	run := func(hook string, background bool) (*render.Encoded, time.Duration, error) {
		t.Setenv(envTestHook, hook+":fleet/HANG")
		start := time.Now()
		res, err := Renderer{Limits: limits}.Render(context.Background(), root, "fleet", background)
		return res, time.Since(start), err
	}
	isDeadline := func(err error, want string) bool {
		var serr *Error
		return errors.As(err, &serr) && serr.Reason == "deadline" && strings.Contains(err.Error(), want)
	}

	if res, _, err := run("sleep", true); err != nil || len(res.Objects) != 1 {
		t.Errorf("in the background, a render that waited 3 s (deadline 2 s) = %v, want its object", err)
	}
	if _, _, err := run("sleep", false); !isDeadline(err, "stopped at its deadline of 2s (--render-timeout)") {
		t.Errorf("in the foreground, a render that waited 3 s (deadline 2 s) = %v, want stopped at its deadline", err)
	}

	// The clock's bound far away, so that a busy machine cannot make the CPU's come second.
	defer func(f time.Duration) { backgroundWallFactor = f }(backgroundWallFactor)
	backgroundWallFactor = 60
	_, took, err := run("spin", true)
	if !isDeadline(err, "of CPU time, its deadline in the background (--render-timeout)") {
		t.Errorf("in the background, a render that spins = %v, want stopped at its CPU deadline", err)
	}
	t.Logf("a spinning render in the background was stopped after %s on the clock: %v", took.Round(time.Millisecond), err)

	backgroundWallFactor = 2
	if _, took, err := run("block", true); !isDeadline(err, "stopped at its deadline of 4s on the clock in the background (2× --render-timeout)") || took < 4*time.Second {
		t.Errorf("in the background, a render blocked on nothing = %v after %s, want stopped at 4s on the clock", err, took)
	}
}

func TestCPUTimeIsReadAfterTheCommandName(t *testing.T) {
	// A command name may hold spaces and parentheses; utime 250 and stime 50 ticks are 3 s.
	stat := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10 18446744073709551615\n"
	if got, ok := parseCPUTime(stat); !ok || got != 3*time.Second {
		t.Errorf("parseCPUTime = %s %v, want 3s", got, ok)
	}
	if _, ok := parseCPUTime("4242 (a"); ok {
		t.Error("a cut line was read")
	}
	// The test's own process has had some CPU time.
	if got, ok := cpuTime(os.Getpid()); runtime.GOOS == "linux" && (!ok || got <= 0) {
		t.Errorf("cpuTime(self) = %s %v", got, ok)
	}
}

// TestAnAliasBombIsRefusedInTheChild: the child refuses the file (render's alias budget) and the
// daemon's process never holds the expansion.
func TestAnAliasBombIsRefusedInTheChild(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{"fleet/kustomization.yaml": "resources: [a.yaml, bomb.yaml]\n", "fleet/a.yaml": md("a"), "fleet/bomb.yaml": fixture.AliasBomb()})
	res, err := Renderer{}.Render(context.Background(), root, "fleet", false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Partial || !strings.Contains(errors.Join(res.Errors...).Error(), "fleet/bomb.yaml: document 1: its YAML aliases expand to more than 100000 nodes") {
		t.Errorf("errors %v do not name the bomb", res.Errors)
	}
}
