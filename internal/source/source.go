package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/driftd/driftd/internal/egress"
)

// Checkout is one revision of the repository on disk.
type Checkout struct {
	// Dir is the work tree. It stays valid until the next Fetch.
	Dir string
	// Ref is the branch, tag or SHA that was asked for ("HEAD" when none was).
	Ref string
	// Commit is the full SHA checked out.
	Commit string
}

// Revision names the checkout as "<ref>@sha1:<sha>", the form driftd reports everywhere.
func (c Checkout) Revision() string { return c.Ref + "@sha1:" + c.Commit }

// Source fetches one repository. It is safe for use by one goroutine at a time; Fetch serialises
// concurrent callers.
type Source struct {
	opts   Options
	dir    string
	auth   transport.AuthMethod
	ca     []byte
	redact *redactor
	// keyring is the armored keyring head commits must be signed with, or "".
	keyring string

	mu   sync.Mutex
	last *Checkout
	// verified is the last commit verified under the keyring ("" before the first): a new head must
	// descend from it.
	verified string
}

// SetLastVerified tells the source the last commit verified by an earlier driftd (remembered in
// driftd's namespace), so a restart does not accept a rollback either.
func (s *Source) SetLastVerified(commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verified = commit
}

// LastVerified returns the last commit verified under the keyring, or "".
func (s *Source) LastVerified() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verified
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

var installLocalTransport sync.Once

// New returns a Source for opts after validating them and loading the credentials they name.
func New(opts Options) (*Source, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	auth, password, err := authMethod(opts)
	if err != nil {
		return nil, newRedactor(opts.URL).redact(err)
	}
	// Local repositories are served by go-git's in-process server rather than a git-upload-pack
	// binary, which the driftd image does not ship.
	installLocalTransport.Do(func() {
		client.InstallProtocol("file", server.DefaultServer)
		// git over HTTP(S) with a transport of its own: Go's default one refuses every request in
		// driftd (internal/egress).
		own := githttp.NewClient(&http.Client{Transport: egress.NewTransport()})
		client.InstallProtocol("https", own)
		client.InstallProtocol("http", own)
	})
	var ca []byte
	if opts.CAFile != "" {
		if ca, err = os.ReadFile(opts.CAFile); err != nil {
			return nil, fmt.Errorf("--git-ca-file: %w", err)
		}
	}
	var keyring string
	if opts.VerifyKeyringFile != "" {
		if keyring, err = loadKeyring(opts.VerifyKeyringFile); err != nil {
			return nil, fmt.Errorf("--verify-signatures %s: %w", opts.VerifyKeyringFile, err)
		}
	}
	sum := sha256.Sum256([]byte(opts.URL + "\x00" + opts.Ref))
	return &Source{opts: opts, dir: filepath.Join(CacheRoot(opts.CacheDir), hex.EncodeToString(sum[:8])), auth: auth, ca: ca,
		redact: newRedactor(opts.URL, password), keyring: keyring}, nil
}

// CacheRoot is the folder clones are kept in (Options.CacheDir): dir, or a folder under
// os.TempDir() when dir is empty.
func CacheRoot(dir string) string {
	if dir == "" {
		return filepath.Join(os.TempDir(), "driftd-source")
	}
	return dir
}

// Last returns the last checkout Fetch produced, or nil.
func (s *Source) Last() *Checkout {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Fetch brings the configured ref onto disk and returns its checkout. When the remote has not moved
// since the last fetch it only asks the remote for its refs. On error, the previous checkout (if
// any) is left as it was: callers keep acting on their last good revision.
func (s *Source) Fetch(ctx context.Context) (*Checkout, error) {
	co, err := s.fetchHead(ctx)
	return co, s.redact.redact(err)
}

func (s *Source) fetchHead(ctx context.Context) (*Checkout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.opts.timeout())
	defer cancel()

	url := s.url()
	target, refName, err := s.resolve(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", RedactURL(s.opts.URL), err)
	}
	if s.last != nil && s.last.Commit == target.String() {
		return s.last, nil
	}
	co, err := s.checkout(ctx, url, target, refName)
	var refused *VerificationError
	if errors.As(err, &refused) {
		return nil, err // the commit is refused, not the cache: the last verified checkout stays
	}
	if err != nil {
		// A cache the fetch could not update (a shallow history go-git cannot extend, a folder left
		// half-written by an earlier crash) is thrown away and cloned anew, once.
		if rmErr := os.RemoveAll(s.dir); rmErr != nil {
			return nil, fmt.Errorf("fetching %s: %w", RedactURL(s.opts.URL), errors.Join(err, rmErr))
		}
		if co, err = s.checkout(ctx, url, target, refName); err != nil {
			return nil, fmt.Errorf("fetching %s: %w", RedactURL(s.opts.URL), err)
		}
	}
	s.last = co
	if s.keyring != "" {
		s.verified = co.Commit
	}
	return co, nil
}

func (s *Source) url() string {
	if kindOf(s.opts.URL) != kindLocal {
		return s.opts.URL
	}
	p, err := filepath.Abs(localPath(s.opts.URL))
	if err != nil {
		p = localPath(s.opts.URL)
	}
	// The in-process server reads a repository's git folder: a work tree's is its .git.
	if fi, err := os.Stat(filepath.Join(p, ".git")); err == nil && fi.IsDir() {
		p = filepath.Join(p, ".git")
	}
	return "file://" + p
}

func (s *Source) ref() string {
	if s.opts.Ref == "" {
		return "HEAD"
	}
	return s.opts.Ref
}

// resolve asks the remote which commit the ref names, and returns the full name of the ref to
// fetch (empty for a SHA, which is fetched with the remote's branches).
func (s *Source) resolve(ctx context.Context, url string) (plumbing.Hash, plumbing.ReferenceName, error) {
	ref := s.ref()
	if shaRE.MatchString(ref) {
		return plumbing.NewHash(ref), "", nil
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: s.auth, CABundle: s.ca})
	if err != nil {
		return plumbing.ZeroHash, "", fmt.Errorf("listing remote refs: %w", err)
	}
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	candidates := []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	if ref == "HEAD" {
		head, ok := byName[plumbing.HEAD]
		if !ok {
			return plumbing.ZeroHash, "", errors.New("the remote has no HEAD; set --ref")
		}
		if head.Type() == plumbing.SymbolicReference {
			candidates = []plumbing.ReferenceName{head.Target()}
		} else {
			return head.Hash(), plumbing.HEAD, nil
		}
	}
	for _, name := range candidates {
		r, ok := byName[name]
		if !ok {
			continue
		}
		if peeled, ok := byName[plumbing.ReferenceName(string(name)+"^{}")]; ok {
			return peeled.Hash(), name, nil // an annotated tag: the commit it points to
		}
		return r.Hash(), name, nil
	}
	return plumbing.ZeroHash, "", fmt.Errorf("ref %q is neither a branch nor a tag of the remote", ref)
}

func (s *Source) checkout(ctx context.Context, url string, target plumbing.Hash, refName plumbing.ReferenceName) (*Checkout, error) {
	repo, err := git.PlainOpen(s.dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = s.clone(ctx, url, refName)
	} else if err == nil {
		err = s.fetch(ctx, repo, refName)
	}
	if err != nil {
		return nil, err
	}
	if err := s.verify(repo, target); err != nil {
		return nil, err
	}
	if err := s.descends(repo, target); err != nil {
		return nil, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, err
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: target, Force: true}); err != nil {
		return nil, fmt.Errorf("checking out %s: %w", target, err)
	}
	return &Checkout{Dir: s.dir, Ref: s.ref(), Commit: target.String()}, nil
}

func (s *Source) clone(ctx context.Context, url string, refName plumbing.ReferenceName) (*git.Repository, error) {
	opts := &git.CloneOptions{URL: url, Auth: s.auth, CABundle: s.ca, NoCheckout: true, Tags: git.NoTags}
	if refName != "" && refName != plumbing.HEAD {
		// A branch or tag: only its newest commit is needed.
		opts.ReferenceName, opts.SingleBranch = refName, true
		opts.Depth = s.depth()
	}
	repo, err := git.PlainCloneContext(ctx, s.dir, false, opts)
	if err != nil {
		_ = os.RemoveAll(s.dir)
		return nil, fmt.Errorf("cloning: %w", err)
	}
	return repo, nil
}

// depth is 1 (only the newest commit) for remote repositories, whose servers support shallow
// fetches, and 0 (all) for local ones, served in-process by go-git, which does not; reading a local
// history costs no network.
func (s *Source) depth() int {
	if kindOf(s.opts.URL) == kindLocal || s.keyring != "" {
		// Under --verify-signatures a new head must descend from the last verified commit: that
		// takes the history, not only the newest commit.
		return 0
	}
	return 1
}

func (s *Source) fetch(ctx context.Context, repo *git.Repository, refName plumbing.ReferenceName) error {
	opts := &git.FetchOptions{RemoteName: "origin", Auth: s.auth, CABundle: s.ca, Tags: git.NoTags, Force: true}
	if refName != "" && refName != plumbing.HEAD {
		opts.RefSpecs = []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:%s", refName, refName))}
		opts.Depth = s.depth()
	}
	err := repo.FetchContext(ctx, opts)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("fetching: %w", err)
	}
	return nil
}
