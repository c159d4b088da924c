package render

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Cache keeps the last complete render on disk, so that a restarted daemon whose branch has not
// moved takes it instead of rendering the same commit again (at 10,000 clusters a render is tens
// of seconds of CPU). A render is kept under a key of the commit, the folder rendered and Salt
// (what else decides the render: the binary that rendered it and its budgets): any other key,
// a file cut short or changed, is no render and the commit is rendered again.
//
// The file lies beside the clone, on the volume the daemon alone writes; it is trusted as the
// clone is (whoever can write one can write the other), and checked only against damage.
type Cache struct {
	// File is the render's file; its folder is created when needed.
	File string
	// Salt is what decides a render besides its commit and folder; it is asked once, on first use.
	Salt func() ([]byte, error)
}

// cacheHeader is the first line of a cache file.
type cacheHeader struct {
	Format  int    `json:"format"`
	Key     string `json:"key"`
	Objects int    `json:"objects"`
	Size    int64  `json:"size"`
	Sum     string `json:"sha256"`
}

const cacheFormat = 1

func (c *Cache) key(commit, dir string) (string, error) {
	salt, err := c.Salt()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, part := range [][]byte{salt, []byte(commit), []byte(dir)} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Load returns the render kept for commit and dir, or nil when there is none: no file, another
// key, or a file that does not hold what its header says (an error says which).
func (c *Cache) Load(commit, dir string) (*Encoded, error) {
	key, err := c.key(commit, dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(c.File)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("%s: no header: %w", c.File, err)
	}
	var h cacheHeader
	if err := json.Unmarshal(line, &h); err != nil || h.Format != cacheFormat {
		return nil, fmt.Errorf("%s: not a render kept by this driftd", c.File)
	}
	if h.Key != key {
		return nil, nil
	}
	// The body is read whole only when the file is as long as the header says: a damaged size
	// allocates nothing.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if h.Objects < 0 || h.Size != fi.Size()-int64(len(line)) || int64(h.Objects) > h.Size {
		return nil, fmt.Errorf("%s: %d bytes after its header, which says %d (%d objects)", c.File, fi.Size()-int64(len(line)), h.Size, h.Objects)
	}
	body := make([]byte, h.Size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("%s: cut short: %w", c.File, err)
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != h.Sum {
		return nil, fmt.Errorf("%s: its content does not match its checksum", c.File)
	}
	enc := &Encoded{Objects: make([]EncodedObject, 0, h.Objects)}
	next := func() ([]byte, bool) {
		n, w := binary.Uvarint(body)
		if w <= 0 || n > uint64(len(body)-w) {
			return nil, false
		}
		field := body[w : w+int(n) : w+int(n)]
		body = body[w+int(n):]
		return field, true
	}
	for range h.Objects {
		file, ok1 := next()
		js, ok2 := next()
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s: an object cut short", c.File)
		}
		enc.Objects = append(enc.Objects, EncodedObject{JSON: js, File: string(file)})
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%s: more than its %d objects", c.File, h.Objects)
	}
	return enc, nil
}

// Store keeps enc as the render of commit and dir, in place of any other. Only a complete render
// is kept (a partial one is rendered again, to report its errors again). The file is written
// aside and renamed over the last, so a process killed while writing leaves the last whole.
func (c *Cache) Store(commit, dir string, enc *Encoded) error {
	if enc == nil || enc.Partial || len(enc.Errors) > 0 {
		return nil
	}
	key, err := c.key(commit, dir)
	if err != nil {
		return err
	}
	// The body is written twice, to its checksum and to the file, never held a second time.
	body := func(w io.Writer) {
		var n [binary.MaxVarintLen64]byte
		for _, o := range enc.Objects {
			for _, field := range [][]byte{[]byte(o.File), o.JSON} {
				_, _ = w.Write(n[:binary.PutUvarint(n[:], uint64(len(field)))])
				_, _ = w.Write(field)
			}
		}
	}
	sum := sha256.New()
	size := &counter{w: sum}
	body(size)
	header, err := json.Marshal(cacheHeader{Format: cacheFormat, Key: key, Objects: len(enc.Objects), Size: size.n, Sum: hex.EncodeToString(sum.Sum(nil))})
	if err != nil {
		return err
	}
	folder := filepath.Dir(c.File)
	if err := os.MkdirAll(folder, 0o700); err != nil {
		return err
	}
	base := filepath.Base(c.File)
	// What a process killed while writing left behind.
	if leftovers, err := filepath.Glob(filepath.Join(folder, "."+base+".*")); err == nil {
		for _, l := range leftovers {
			_ = os.Remove(l)
		}
	}
	tmp, err := os.CreateTemp(folder, "."+base+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a name that is gone
	w := bufio.NewWriterSize(tmp, 1<<20)
	_, _ = w.Write(append(header, '\n'))
	body(w)
	if err := errors.Join(w.Flush(), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), c.File); err != nil {
		return err
	}
	if d, err := os.Open(folder); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

// CacheFileName is the name of the render cache of a source and a folder: one file for each, so
// that daemons sharing a cache volume keep their own.
func CacheFileName(url, ref, dir string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{url, ref, dir}, "\x00")))
	return "render-" + hex.EncodeToString(sum[:8])
}
