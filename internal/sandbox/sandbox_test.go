package sandbox

import (
	"context"
	"errors"
	"fmt"
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
