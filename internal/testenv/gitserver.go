package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// GitRepo is a git repository on disk that tests commit to and serve.
type GitRepo struct {
	// Dir is the repository's work tree; the repository itself is Dir/.git.
	Dir  string
	repo *git.Repository
}

// NewGitRepo creates a repository in a temporary folder with one commit holding files
// (path → content) on branch main.
func NewGitRepo(tb testing.TB, files map[string]string) *GitRepo {
	tb.Helper()
	return newGitRepo(tb, files, nil)
}

// NewSignedGitRepo is NewGitRepo with the first commit signed by key.
func NewSignedGitRepo(tb testing.TB, files map[string]string, key *openpgp.Entity) *GitRepo {
	tb.Helper()
	return newGitRepo(tb, files, key)
}

func newGitRepo(tb testing.TB, files map[string]string, key *openpgp.Entity) *GitRepo {
	tb.Helper()
	dir := tb.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	r := &GitRepo{Dir: dir, repo: repo}
	r.commit(tb, "initial fleet", files, key)
	return r
}

// Commit writes files (a nil-like empty content "\x00" deletes the file) and commits them,
// returning the commit's SHA.
func (r *GitRepo) Commit(tb testing.TB, message string, files map[string]string) string {
	tb.Helper()
	return r.commit(tb, message, files, nil)
}

// CommitSigned is Commit with an OpenPGP signature by key.
func (r *GitRepo) CommitSigned(tb testing.TB, message string, files map[string]string, key *openpgp.Entity) string {
	tb.Helper()
	return r.commit(tb, message, files, key)
}

// NewSigningKey returns a new OpenPGP key pair and its public key, armored as a keyring file holds it.
func NewSigningKey(tb testing.TB, name string) (*openpgp.Entity, string) {
	tb.Helper()
	key, err := openpgp.NewEntity(name, "", strings.ToLower(strings.ReplaceAll(name, " ", "."))+"@example.com", nil)
	if err != nil {
		tb.Fatal(err)
	}
	var buf strings.Builder
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := key.Serialize(w); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return key, buf.String()
}

func (r *GitRepo) commit(tb testing.TB, message string, files map[string]string, sign *openpgp.Entity) string {
	tb.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		tb.Fatal(err)
	}
	// Each Add reads and writes the whole index: a fleet of thousands of files is added at once.
	many := len(files) > 200
	for path, content := range files {
		full := filepath.Join(r.Dir, path)
		if content == Delete {
			if _, err := wt.Remove(path); err != nil {
				tb.Fatalf("removing %s: %v", path, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, Symlink); ok {
			_ = os.Remove(full)
			if err := os.Symlink(target, full); err != nil {
				tb.Fatal(err)
			}
		} else if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
		if many {
			continue
		}
		if _, err := wt.Add(path); err != nil {
			tb.Fatalf("adding %s: %v", path, err)
		}
	}
	if many {
		if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
			tb.Fatalf("adding the files: %v", err)
		}
	}
	hash, err := wt.Commit(message, &git.CommitOptions{
		AllowEmptyCommits: true,
		SignKey:           sign,
		Author:            &object.Signature{Name: "Fleet Maintainer", Email: "fleet@example.com", When: time.Now()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return hash.String()
}

// ResetBranch moves branch main to commit and its work tree with it, as a force-push that rewrites
// the branch's history would.
func (r *GitRepo) ResetBranch(tb testing.TB, commit string) {
	tb.Helper()
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName("main"), plumbing.NewHash(commit))); err != nil {
		tb.Fatal(err)
	}
	wt, err := r.repo.Worktree()
	if err != nil {
		tb.Fatal(err)
	}
	if err := wt.Reset(&git.ResetOptions{Commit: plumbing.NewHash(commit), Mode: git.HardReset}); err != nil {
		tb.Fatal(err)
	}
}

// Propose commits files on branch, made from main's head, and leaves main where it was, as a pull
// request's branch is pushed before its merge. Merge it with ResetBranch(the returned commit).
func (r *GitRepo) Propose(tb testing.TB, branch, message string, files map[string]string) string {
	tb.Helper()
	head, err := r.repo.Head()
	if err != nil {
		tb.Fatal(err)
	}
	commit := r.Commit(tb, message, files)
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(branch), plumbing.NewHash(commit))); err != nil {
		tb.Fatal(err)
	}
	r.ResetBranch(tb, head.Hash().String())
	return commit
}

// Tag tags the current HEAD.
func (r *GitRepo) Tag(tb testing.TB, name string) {
	tb.Helper()
	head, err := r.repo.Head()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := r.repo.CreateTag(name, head.Hash(), nil); err != nil {
		tb.Fatal(err)
	}
}

// Delete, as the content of a file given to Commit, removes the file.
const Delete = "\x00delete"

// Symlink, followed by a target, as the content of a file given to Commit, makes it a symbolic
// link to that target.
const Symlink = "\x00symlink:"

// ServeHTTP serves the repository over git's smart HTTP protocol (git http-backend behind
// net/http/cgi) on a loopback port, requiring basic auth with user and password when user is set.
// It returns the repository's URL.
func (r *GitRepo) ServeHTTP(tb testing.TB, user, password string) string {
	tb.Helper()
	return r.serveHTTP(tb, user, password, nil, nil)
}

// Gate makes a git server hang, as a remote that accepts connections and then never answers.
type Gate struct {
	mu      sync.Mutex
	held    chan struct{} // closed to release; nil while open
	waiting int
}

// Hold makes every request from now on wait until Release.
func (g *Gate) Hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

// Release lets the waiting requests (and every later one) through.
func (g *Gate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

// Waiting returns how many requests are hanging now.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

func (g *Gate) pass(r *http.Request) {
	g.mu.Lock()
	held := g.held
	if held != nil {
		g.waiting++
	}
	g.mu.Unlock()
	if held == nil {
		return
	}
	select {
	case <-held:
	case <-r.Context().Done():
	}
	g.mu.Lock()
	g.waiting--
	g.mu.Unlock()
}

// ServeHTTPGated is ServeHTTP without auth behind a Gate the test controls.
func (r *GitRepo) ServeHTTPGated(tb testing.TB) (string, *Gate) {
	tb.Helper()
	g := &Gate{}
	tb.Cleanup(g.Release)
	return r.serveHTTP(tb, "", "", g, nil), g
}

// PackFault breaks the packs a git server sends in answer to a fetch, a few bytes into the pack
// data: cut off (the connection drops, as a proxy or a load balancer drops it) or stalled (the
// server stops sending and keeps the connection open).
type PackFault struct {
	mu      sync.Mutex
	mode    packMode
	release chan struct{}
	hits    int
	waiting int
}

type packMode int

const (
	packIntact packMode = iota
	packCut
	packStall
)

// Cut makes every pack from now on break off.
func (f *PackFault) Cut() { f.set(packCut) }

// Stall makes every pack from now on stop and hang until Clear (or the client gives up).
func (f *PackFault) Stall() { f.set(packStall) }

// Clear sends packs whole again and lets the stalled ones go on (they are then cut off).
func (f *PackFault) Clear() { f.set(packIntact) }

func (f *PackFault) set(m packMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = m
	if m != packStall && f.release != nil {
		close(f.release)
		f.release = nil
	}
	if m == packStall && f.release == nil {
		f.release = make(chan struct{})
	}
}

// Hits is how many packs were broken so far.
func (f *PackFault) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// Waiting is how many fetches are stalled in the middle of their pack now.
func (f *PackFault) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

// packWriter passes an upload-pack answer through until 16 bytes past the pack's signature,
// then breaks it as its fault says.
type packWriter struct {
	http.ResponseWriter
	f      *PackFault
	mode   packMode
	ctx    context.Context
	seen   []byte
	broken bool
}

func (w *packWriter) Write(p []byte) (int, error) {
	if w.broken {
		return len(p), nil // the child's output is drained, never sent
	}
	start := len(w.seen)
	w.seen = append(w.seen, p...)
	i := bytes.Index(w.seen, []byte("PACK"))
	if i < 0 || i+4+16 > len(w.seen) {
		return w.ResponseWriter.Write(p)
	}
	keep := max(i+4+16-start, 0)
	if _, err := w.ResponseWriter.Write(p[:keep]); err != nil {
		return 0, err
	}
	w.ResponseWriter.(http.Flusher).Flush()
	w.broken = true
	w.f.mu.Lock()
	w.f.hits++
	release := w.f.release
	if w.mode == packStall && release != nil {
		w.f.waiting++
		w.f.mu.Unlock()
		select {
		case <-release:
		case <-w.ctx.Done():
		}
		w.f.mu.Lock()
		w.f.waiting--
	}
	w.f.mu.Unlock()
	return len(p), nil
}

// ServeHTTPPackFaults is ServeHTTP without auth, breaking the packs it sends as the returned
// PackFault says.
func (r *GitRepo) ServeHTTPPackFaults(tb testing.TB) (string, *PackFault) {
	tb.Helper()
	f := &PackFault{}
	tb.Cleanup(f.Clear)
	return r.serveHTTP(tb, "", "", nil, f), f
}

func (r *GitRepo) serveHTTP(tb testing.TB, user, password string, gate *Gate, pack *PackFault) string {
	tb.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		Unavailable(tb, "git http-backend: %v", err)
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.Dir), "GIT_HTTP_EXPORT_ALL=1"},
		// A repository a test broke on purpose makes the backend complain; the client's error is what counts.
		Stderr: io.Discard,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if gate != nil {
			gate.pass(req)
		}
		if user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="fleet"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if pack != nil && strings.HasSuffix(req.URL.Path, "/git-upload-pack") {
			pack.mu.Lock()
			mode := pack.mode
			pack.mu.Unlock()
			if mode != packIntact {
				pw := &packWriter{ResponseWriter: w, f: pack, mode: mode, ctx: req.Context()}
				backend.ServeHTTP(pw, req)
				if pw.broken {
					panic(http.ErrAbortHandler) // the connection drops without the answer's end
				}
				return
			}
		}
		backend.ServeHTTP(w, req)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(r.Dir)
}

// SSHServer is a git server reached over SSH on a loopback port.
type SSHServer struct {
	// URL is the repository's ssh:// URL.
	URL string
	// KnownHostsFile trusts the server's host key.
	KnownHostsFile string
	// KeyFile is a client private key the server accepts.
	KeyFile string
}

// ServeSSH serves the repository over SSH, running git-upload-pack for each fetch. Only the
// client key in KeyFile is accepted.
func (r *GitRepo) ServeSSH(tb testing.TB) *SSHServer {
	tb.Helper()
	uploadPack, err := exec.LookPath("git-upload-pack")
	if err != nil {
		Unavailable(tb, "git-upload-pack for the SSH git server: %v", err)
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		tb.Fatal(err)
	}
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	authorized, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	root := filepath.Dir(r.Dir)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveSSHConn(conn, cfg, uploadPack, root)
		}
	}()

	dir := tb.TempDir()
	pemBlock, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		tb.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	writeFile(tb, keyFile, string(pem.EncodeToMemory(pemBlock)), 0o600)
	addr := l.Addr().(*net.TCPAddr)
	knownHosts := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", addr.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))))
	writeFile(tb, knownHosts, line+"\n", 0o644)
	return &SSHServer{
		URL:            fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", addr.Port, filepath.Base(r.Dir)),
		KnownHostsFile: knownHosts,
		KeyFile:        keyFile,
	}
}

func serveSSHConn(conn net.Conn, cfg *ssh.ServerConfig, uploadPack, root string) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range requests {
				if req.Type != "exec" || len(req.Payload) < 4 {
					_ = req.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(req.Payload)
				command := string(req.Payload[4 : 4+n])
				repo, ok := strings.CutPrefix(command, "git-upload-pack ")
				if !ok {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				repo = strings.Trim(repo, "'\"/")
				cmd := exec.Command(uploadPack, filepath.Join(root, filepath.Base(repo)))
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				status := uint32(0)
				if err := cmd.Run(); err != nil {
					status = 1
				}
				_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
				return
			}
		}()
	}
}

func writeFile(tb testing.TB, path, content string, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
}
