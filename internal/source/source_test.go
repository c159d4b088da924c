package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftd/driftd/internal/testenv"
)

const fleetFile = "clusters/prod/cluster.yaml"

func readFleetFile(tb testing.TB, co *Checkout) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(co.Dir, fleetFile))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// fetchTwice fetches, commits a change, fetches again and checks that both revisions are what the
// repository held.
func fetchTwice(t *testing.T, repo *testenv.GitRepo, opts Options) {
	t.Helper()
	ctx := context.Background()
	opts.CacheDir = t.TempDir()
	src, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Fetch(ctx)
	if err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	if got := readFleetFile(t, first); got != "replicas: 1\n" {
		t.Errorf("first checkout holds %q", got)
	}
	sha := repo.Commit(t, "scale up", map[string]string{fleetFile: "replicas: 3\n"})
	second, err := src.Fetch(ctx)
	if err != nil {
		t.Fatalf("second fetch: %v", err)
	}
	if second.Commit != sha {
		t.Errorf("second fetch checked out %s, want the new commit %s", second.Commit, sha)
	}
	if want := "main@sha1:" + sha; second.Revision() != want {
		t.Errorf("revision = %q, want %q", second.Revision(), want)
	}
	if got := readFleetFile(t, second); got != "replicas: 3\n" {
		t.Errorf("second checkout holds %q, want the new content", got)
	}
}

func newFleetRepo(t *testing.T) *testenv.GitRepo {
	return testenv.NewGitRepo(t, map[string]string{fleetFile: "replicas: 1\n"})
}

func TestFetchOverFileURLAndLocalPath(t *testing.T) {
	t.Run("file://", func(t *testing.T) {
		repo := newFleetRepo(t)
		fetchTwice(t, repo, Options{URL: "file://" + repo.Dir, Ref: "main"})
	})
	t.Run("local path", func(t *testing.T) {
		repo := newFleetRepo(t)
		fetchTwice(t, repo, Options{URL: repo.Dir, Ref: "main"})
	})
}

func TestFetchOverSmartHTTPWithBasicAuth(t *testing.T) {
	repo := newFleetRepo(t)
	url := repo.ServeHTTP(t, "fleet-bot", "s3cret")
	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passwordFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fetchTwice(t, repo, Options{URL: url, Ref: "main", Username: "fleet-bot", PasswordFile: passwordFile})

	t.Run("token from the environment", func(t *testing.T) {
		t.Setenv(EnvGitToken, "s3cret")
		src, err := New(Options{URL: url, Ref: "main", Username: "fleet-bot", CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(context.Background()); err != nil {
			t.Fatalf("fetch with a token from %s: %v", EnvGitToken, err)
		}
	})
	t.Run("wrong password is refused and names the repository", func(t *testing.T) {
		t.Setenv(EnvGitPassword, "wrong")
		src, err := New(Options{URL: url, Ref: "main", Username: "fleet-bot", CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Fetch(context.Background())
		if err == nil || !strings.Contains(err.Error(), url) {
			t.Fatalf("fetch with a wrong password = %v, want an error naming %s", err, url)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
}

func TestFetchOverSSHChecksTheHostKey(t *testing.T) {
	repo := newFleetRepo(t)
	srv := repo.ServeSSH(t)
	fetchTwice(t, repo, Options{URL: srv.URL, Ref: "main", SSHKeyFile: srv.KeyFile, KnownHostsFile: srv.KnownHostsFile})

	t.Run("unknown host key is refused", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(other, []byte("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbQ5p0I8oH5BCVbgRFSO9BfWVc0Z/Xp5zU1Z8nB1gVg\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := New(Options{URL: srv.URL, Ref: "main", SSHKeyFile: srv.KeyFile, KnownHostsFile: other, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(context.Background()); err == nil {
			t.Fatal("fetch from a host whose key is not in known_hosts succeeded")
		}
	})
	t.Run("known_hosts is required", func(t *testing.T) {
		_, err := New(Options{URL: srv.URL, SSHKeyFile: srv.KeyFile})
		if err == nil || !strings.Contains(err.Error(), "--git-known-hosts-file") {
			t.Fatalf("New without known_hosts = %v, want an error naming --git-known-hosts-file", err)
		}
	})
}

func TestFetchRefs(t *testing.T) {
	ctx := context.Background()
	repo := newFleetRepo(t)
	first := repo.Commit(t, "v1", map[string]string{fleetFile: "replicas: 2\n"})
	repo.Tag(t, "v1.0.0")
	repo.Commit(t, "after the tag", map[string]string{fleetFile: "replicas: 5\n"})

	tests := []struct {
		name, ref, want string
	}{
		{"tag", "v1.0.0", "replicas: 2\n"},
		{"commit SHA", first, "replicas: 2\n"},
		{"branch", "main", "replicas: 5\n"},
		{"default branch", "", "replicas: 5\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := New(Options{URL: repo.Dir, Ref: tt.ref, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			co, err := src.Fetch(ctx)
			if err != nil {
				t.Fatalf("fetch %q: %v", tt.ref, err)
			}
			if got := readFleetFile(t, co); got != tt.want {
				t.Errorf("checkout of %q holds %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
	t.Run("unknown ref", func(t *testing.T) {
		src, err := New(Options{URL: repo.Dir, Ref: "no-such-branch", CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "no-such-branch") {
			t.Fatalf("fetch of an unknown ref = %v, want an error naming it", err)
		}
	})
}

func TestFailedFetchKeepsTheLastGoodCheckout(t *testing.T) {
	ctx := context.Background()
	repo := newFleetRepo(t)
	url := repo.ServeHTTP(t, "", "")
	src, err := New(Options{URL: url, Ref: "main", CacheDir: t.TempDir(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	good, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The server goes away: the fetch fails, the last checkout stays as it was.
	if err := os.RemoveAll(filepath.Join(repo.Dir, ".git")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(ctx); err == nil {
		t.Fatal("fetch from a removed repository succeeded")
	}
	if last := src.Last(); last == nil || last.Commit != good.Commit {
		t.Fatalf("after a failed fetch Last() = %+v, want the good checkout %s", last, good.Commit)
	}
	if got := readFleetFile(t, good); got != "replicas: 1\n" {
		t.Errorf("the good checkout now holds %q", got)
	}
}
