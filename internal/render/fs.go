package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// tree is the render's view of the checkout: the in-memory filesystem kustomize builds in, filled
// from the checkout on demand. A folder's entries are listed when something looks into it, and a
// file is read when something reads it, so a render reads only --path and what its kustomizations
// reference, and every read is counted against the budgets.
//
// It holds by construction what the render may read: nothing outside the checkout (a symlink that
// leaves it is refused), nothing of a .git folder (it is never listed, and a symlink into one is
// refused), and nothing kustomize could fetch from elsewhere, since kustomize reads only through
// this filesystem. Writes (the kustomizations render writes for itself) stay in memory.
type tree struct {
	root   string // the checkout, symlinks resolved
	limits Limits
	// check is called with every file read from the checkout before kustomize sees it; it returns
	// the content to use (a kustomization without what the render refuses) or an error that makes
	// the file unreadable. It may read other files through readLocked.
	check func(t *tree, p string, data []byte) ([]byte, error)
	// progress is told each file read, for a render stopped at its deadline to say where it was.
	progress func(file string)

	mu      sync.Mutex
	mem     filesys.FileSystem
	listed  map[string]bool   // folders whose entries are known
	unread  map[string]string // files known and not read yet: path → file in the checkout
	refused map[string]string // files that may not be read: path → why
	files   int               // files read
	bytes   int64             // bytes read
	entries int               // folder entries listed
	objects int               // objects rendered
	over    error             // the first budget exceeded; the render fails with it
	// refusals are the locations outside the checkout the guard took out of kustomizations.
	refusals []error
	// edges are the folders each kustomization read so far includes, to refuse a cycle.
	edges map[string][]string
}

var _ filesys.FileSystem = (*tree)(nil)

// errBudget marks a budget exceeded: the whole render fails, not a part of it.
var errBudget = errors.New("render budget exceeded")

func newTree(root string, limits Limits) (*tree, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", root)
	}
	return &tree{root: real, limits: limits.withDefaults(), mem: filesys.MakeFsInMemory(),
		listed: map[string]bool{}, unread: map[string]string{}, refused: map[string]string{}, edges: map[string][]string{}}, nil
}

// clean turns any path kustomize or render uses into the tree's absolute form.
func clean(p string) string { return path.Clean("/" + filepath.ToSlash(p)) }

// Budget returns the first budget the render exceeded, or nil.
func (t *tree) budget() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.over
}

func (t *tree) exceed(err error) error {
	if t.over == nil {
		t.over = fmt.Errorf("%w: %w", errBudget, err)
	}
	return t.over
}

// countObjects adds n rendered objects and fails once they exceed the budget.
func (t *tree) countObjects(n int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objects += n
	if t.objects > t.limits.MaxObjects {
		return t.exceed(fmt.Errorf("more than %d objects rendered (--render-max-objects)", t.limits.MaxObjects))
	}
	return nil
}

// listLocked makes the entries of folder dir (and of every folder above it) known.
func (t *tree) listLocked(dir string) {
	if t.listed[dir] {
		return
	}
	if dir != "/" {
		t.listLocked(path.Dir(dir))
		if !t.mem.IsDir(dir) {
			return // not a folder of the checkout (yet): nothing to list
		}
	}
	t.listed[dir] = true
	entries, err := os.ReadDir(filepath.Join(t.root, filepath.FromSlash(dir)))
	if err != nil {
		return // a folder render wrote itself, or one that cannot be read: it is empty
	}
	for _, e := range entries {
		if t.entries++; t.entries > t.limits.maxEntries() {
			_ = t.exceed(fmt.Errorf("more than %d entries in the folders the render looked into", t.limits.maxEntries()))
			return
		}
		name := e.Name()
		if name == ".git" {
			continue // the repository's own data (its remote, with credentials) is never part of a render
		}
		p := path.Join(dir, name)
		if t.mem.Exists(p) {
			continue // written by render before the folder was listed
		}
		real := filepath.Join(t.root, filepath.FromSlash(p))
		switch {
		case e.IsDir():
			_ = t.mem.MkdirAll(p)
		case e.Type().IsRegular():
			_ = t.mem.WriteFile(p, nil)
			t.unread[p] = real
		case e.Type()&fs.ModeSymlink != 0:
			target, why := t.follow(real)
			if why != "" {
				_ = t.mem.WriteFile(p, nil)
				t.refused[p] = why
				continue
			}
			fi, err := os.Stat(target)
			if err != nil || !fi.Mode().IsRegular() {
				continue // a link to a folder: the folder is read under its own path
			}
			_ = t.mem.WriteFile(p, nil)
			t.unread[p] = target
		}
	}
}

// follow resolves a symlink of the checkout, or says why it may not be followed.
func (t *tree) follow(link string) (string, string) {
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", "symlink cannot be resolved; refused"
	}
	rel, err := filepath.Rel(t.root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", "symlink points outside the repository; refused"
	}
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		if part == ".git" {
			return "", "symlink points into the repository's .git folder; refused"
		}
	}
	return target, ""
}

// readLocked returns the content of file p, reading it from the checkout the first time.
func (t *tree) readLocked(p string) ([]byte, error) {
	t.listLocked(path.Dir(p))
	if why, ok := t.refused[p]; ok {
		return nil, fmt.Errorf("%s: %s", display(p), why)
	}
	if real, ok := t.unread[p]; ok {
		if t.over != nil {
			return nil, t.over
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", display(p), err)
		}
		if t.files+1 > t.limits.MaxFiles {
			return nil, t.exceed(fmt.Errorf("%s: more than %d files read (--render-max-files)", display(p), t.limits.MaxFiles))
		}
		if t.bytes+fi.Size() > t.limits.MaxBytes {
			return nil, t.exceed(fmt.Errorf("%s: more than %s read (--render-max-bytes)", display(p), sizeOf(t.limits.MaxBytes)))
		}
		data, err := os.ReadFile(real)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", display(p), err)
		}
		t.files++
		t.bytes += int64(len(data))
		delete(t.unread, p)
		if t.progress != nil {
			t.progress(display(p))
		}
		if t.check != nil {
			checked, err := t.check(t, p, data)
			if err != nil {
				t.refused[p] = err.Error()
				return nil, fmt.Errorf("%s: %w", display(p), err)
			}
			data = checked
		}
		if err := t.mem.WriteFile(p, data); err != nil {
			return nil, err
		}
		return data, nil
	}
	return t.mem.ReadFile(p)
}

// listTreeLocked makes every entry below dir known (for Walk and Glob).
func (t *tree) listTreeLocked(dir string) {
	t.listLocked(dir)
	if !t.mem.IsDir(dir) {
		return
	}
	names, err := t.mem.ReadDir(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		if p := path.Join(dir, n); t.mem.IsDir(p) {
			t.listTreeLocked(p)
		}
	}
}

// forget makes p a file render wrote: nothing of the checkout's is read for it any more.
func (t *tree) forgetLocked(p string) {
	t.listLocked(path.Dir(p))
	delete(t.unread, p)
	delete(t.refused, p)
}

func (t *tree) Create(p string) (filesys.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.forgetLocked(p)
	return t.mem.Create(p)
}

func (t *tree) Mkdir(p string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.listLocked(path.Dir(p))
	return t.mem.Mkdir(p)
}

func (t *tree) MkdirAll(p string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.listLocked(p)
	return t.mem.MkdirAll(p)
}

func (t *tree) RemoveAll(p string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.listTreeLocked(p)
	for k := range t.unread {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(t.unread, k)
		}
	}
	return t.mem.RemoveAll(p)
}

func (t *tree) Open(p string) (filesys.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	if _, err := t.readLocked(p); err != nil {
		return nil, err
	}
	return t.mem.Open(p)
}

func (t *tree) IsDir(p string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.listLocked(path.Dir(p))
	return t.mem.IsDir(p)
}

func (t *tree) ReadDir(p string) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.listLocked(p)
	return t.mem.ReadDir(p)
}

func (t *tree) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := clean(p)
	t.listLocked(path.Dir(c))
	if t.mem.IsDir(c) {
		t.listLocked(c)
		return filesys.ConfirmedDir(c), "", nil
	}
	if !t.mem.Exists(c) {
		return t.mem.CleanedAbs(c) // its error
	}
	// What the in-memory filesystem would answer, without asking it: it finds a node's name by
	// going over its folder's entries, and its path so for each folder above, which makes a fleet
	// of thousands of cluster folders render in time that grows with their square. The tree has
	// no symlinks, so a node's path is the cleaned path that found it.
	return filesys.ConfirmedDir(path.Dir(c)), path.Base(c), nil
}

func (t *tree) Exists(p string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.listLocked(path.Dir(p))
	return t.mem.Exists(p)
}

func (t *tree) Glob(pattern string) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pattern = clean(pattern)
	// List below the part of the pattern that has no wildcard.
	base := pattern
	for strings.ContainsAny(base, `*?[\`) {
		base = path.Dir(base)
	}
	t.listTreeLocked(base)
	return t.mem.Glob(pattern)
}

func (t *tree) ReadFile(p string) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data, err := t.readLocked(clean(p))
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), data...), nil
}

func (t *tree) WriteFile(p string, data []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = clean(p)
	t.forgetLocked(p)
	return t.mem.WriteFile(p, data)
}

// Walk calls walkFn for dir and everything below it, outside the tree's lock (walkFn may read).
func (t *tree) Walk(dir string, walkFn filepath.WalkFunc) error {
	type entry struct {
		path string
		info os.FileInfo
	}
	var entries []entry
	t.mu.Lock()
	dir = clean(dir)
	t.listTreeLocked(dir)
	err := t.mem.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		entries = append(entries, entry{p, info})
		return nil
	})
	t.mu.Unlock()
	if err != nil {
		return walkFn(dir, nil, err)
	}
	skip := ""
	for _, e := range entries {
		if skip != "" && strings.HasPrefix(e.path, skip) {
			continue
		}
		if err := walkFn(e.path, e.info, nil); err != nil {
			if errors.Is(err, filepath.SkipDir) && e.info.IsDir() {
				skip = strings.TrimSuffix(e.path, "/") + "/"
				continue
			}
			if errors.Is(err, filepath.SkipDir) {
				return nil
			}
			return err
		}
	}
	return nil
}

// sizeOf prints a byte count the way the flags take it.
func sizeOf(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
