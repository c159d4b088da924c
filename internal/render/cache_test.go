package render

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// cacheWriterEnv makes the test binary a process that stores renders into a cache without end,
// for TestACacheWriterKilledMidWriteLeavesTheLastRender to kill.
const cacheWriterEnv = "DRIFTD_TEST_CACHE_WRITER"

func TestMain(m *testing.M) {
	if file := os.Getenv(cacheWriterEnv); file != "" {
		c := testCache(file, "salt")
		big := encodedFleet(200000, "big")
		for {
			if err := c.Store("b", "fleet", big); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

func testCache(file, salt string) *Cache {
	return &Cache{File: file, Salt: func() ([]byte, error) { return []byte(salt), nil }}
}

// encodedFleet is a render of n ConfigMaps, their data marked.
func encodedFleet(n int, mark string) *Encoded {
	enc := &Encoded{}
	for i := range n {
		enc.Objects = append(enc.Objects, EncodedObject{
			JSON: fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%d","namespace":"fleet"},"data":{"mark":%q}}`, i, mark),
			File: fmt.Sprintf("fleet/c%05d/cm.yaml", i),
		})
	}
	return enc
}

// TestACacheGivesBackTheRenderOfItsKeyAlone: the render comes back whole for its commit, folder
// and salt; any other of the three finds nothing; a partial render is not kept.
func TestACacheGivesBackTheRenderOfItsKeyAlone(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cache", "render")
	c := testCache(file, "binary-1")
	want := encodedFleet(1000, "one")
	if err := c.Store("commit-a", "fleet", want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Load("commit-a", "fleet")
	if err != nil || got == nil {
		t.Fatalf("load: %v, %v", got, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the render kept (-stored +loaded):\n%s", diff)
	}
	for name, load := range map[string]func() (*Encoded, error){
		"another commit": func() (*Encoded, error) { return c.Load("commit-b", "fleet") },
		"another folder": func() (*Encoded, error) { return c.Load("commit-a", "fleet/prod") },
		"another binary": func() (*Encoded, error) { return testCache(file, "binary-2").Load("commit-a", "fleet") },
	} {
		if got, err := load(); got != nil || err != nil {
			t.Errorf("%s: %d objects, %v; want none", name, len(got.Objects), err)
		}
	}

	partial := encodedFleet(10, "partial")
	partial.Partial, partial.Errors = true, []error{errors.New("fleet/c00003: broken")}
	if err := c.Store("commit-b", "fleet", partial); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Load("commit-b", "fleet"); got != nil || err != nil {
		t.Errorf("a partial render was kept: %v, %v", got, err)
	}
	if got, _ := c.Load("commit-a", "fleet"); got == nil {
		t.Error("storing a partial render lost the complete one before it")
	}
}

// TestADamagedCacheIsNoRender: a kept render changed by one byte, cut short or grown, or whose
// header claims another size, is refused with an error naming the file, never handed on in part
// (and a size claimed is not allocated before it is checked against the file's).
func TestADamagedCacheIsNoRender(t *testing.T) {
	file := filepath.Join(t.TempDir(), "render")
	c := testCache(file, "salt")
	if err := c.Store("a", "fleet", encodedFleet(100, "one")); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	header := bytes.IndexByte(whole, '\n') + 1
	flipped := bytes.Clone(whole)
	flipped[header+len(flipped[header:])/2] ^= 0x20
	for name, content := range map[string][]byte{
		"a byte changed":    flipped,
		"cut short":         whole[:len(whole)-7],
		"grown":             append(bytes.Clone(whole), "{}"...),
		"a header only":     whole[:header],
		"not a cache":       []byte("apiVersion: v1\n"),
		"a body of nothing": append(bytes.Clone(whole[:header]), make([]byte, len(whole)-header)...),
		"a size of 1 TiB":   append([]byte(strings.Replace(string(whole[:header]), `"size":`, `"size":1099511627776`+`,"was":`, 1)), whole[header:]...),
	} {
		if err := os.WriteFile(file, content, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := c.Load("a", "fleet")
		if got != nil || err == nil || !bytes.Contains([]byte(err.Error()), []byte(file)) {
			t.Errorf("%s: %v, %v; want no render and an error naming the file", name, got, err)
		}
	}
}

// TestACacheWriterKilledMidWriteLeavesTheLastRender: a process storing a large render is killed
// with SIGKILL while it writes, again and again; what a restart then loads is always a whole
// render, the last stored, and the next Store clears what the killed writer left.
func TestACacheWriterKilledMidWriteLeavesTheLastRender(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "render")
	c := testCache(file, "salt")
	last := encodedFleet(100, "last")
	if err := c.Store("a", "fleet", last); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), cacheWriterEnv+"="+file)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed while it writes, at a different point each round: once its file aside holds
		// round+1 MiB (the render is about 20 MiB, written through a 1 MiB buffer).
		fixture.EventuallyEvery(t, time.Millisecond, 30*time.Second, fmt.Sprintf("the writer's file aside at %d MiB", round+1), func() bool {
			aside, _ := filepath.Glob(filepath.Join(dir, ".render.*"))
			for _, a := range aside {
				if fi, err := os.Stat(a); err == nil && fi.Size() >= int64(round+1)<<20 {
					return true
				}
			}
			return false
		})
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()

		got, err := c.Load("a", "fleet")
		if err != nil {
			t.Fatalf("round %d: after the kill: %v", round, err)
		}
		if got == nil {
			// The writer finished a Store of its own ("b") before it was killed: that one is whole.
			big, err := c.Load("b", "fleet")
			if err != nil || big == nil || len(big.Objects) != 200000 {
				t.Fatalf("round %d: neither the last render nor the writer's whole: %v", round, err)
			}
		} else if diff := cmp.Diff(last, got); diff != "" {
			t.Fatalf("round %d: the render kept (-stored +loaded):\n%s", round, diff)
		}
		if err := c.Store("a", "fleet", last); err != nil {
			t.Fatal(err)
		}
		if aside, _ := filepath.Glob(filepath.Join(dir, ".render.*")); len(aside) > 0 {
			t.Fatalf("round %d: left behind after a Store: %v", round, aside)
		}
	}
}
