// Package image reads the OCI image layout `make image` writes, with the standard library alone:
// an independent reader of what go-containerregistry assembled. Tests run the binary out of it.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/driftd/driftd/internal/testenv"
)

// The OCI image layout `make image` writes, read with the standard library alone: an independent
// reader of what go-containerregistry assembled.

type Descriptor struct {
	MediaType string            `json:"mediaType"`
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	Platform  *Platform         `json:"platform,omitempty"`
	Annots    map[string]string `json:"annotations,omitempty"`
}

type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
}

type Index struct {
	MediaType string       `json:"mediaType"`
	Manifests []Descriptor `json:"manifests"`
}

type Manifest struct {
	Config Descriptor   `json:"config"`
	Layers []Descriptor `json:"layers"`
}

type Config struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Env        []string          `json:"Env"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// Dir is the OCI layout `make image` wrote (make test builds it first).
func Dir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("DRIFTD_IMAGE")
	if dir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, "bin", "image")
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		tb.Fatalf("no image at %s: run `make image` (make test builds it): %v", dir, err)
	}
	return dir
}

// blob reads a blob of the layout and checks its digest.
func Blob(tb testing.TB, dir, digest string, into any) []byte {
	tb.Helper()
	algo, hash, _ := strings.Cut(digest, ":")
	data, err := os.ReadFile(filepath.Join(dir, "blobs", algo, hash))
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != hash {
		tb.Fatalf("blob %s does not match its digest", digest)
	}
	if into != nil {
		if err := json.Unmarshal(data, into); err != nil {
			tb.Fatalf("blob %s: %v", digest, err)
		}
	}
	return data
}

// Host returns the manifest and config of the image for this machine's platform, and every platform.
func Host(tb testing.TB, dir string) (Manifest, Config, []Platform) {
	tb.Helper()
	var top Index
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(raw, &top); err != nil || len(top.Manifests) != 1 {
		tb.Fatalf("index.json: want one image index, got %s (%v)", raw, err)
	}
	var idx Index
	Blob(tb, dir, top.Manifests[0].Digest, &idx)
	var platforms []Platform
	var m Manifest
	var found bool
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			tb.Fatalf("manifest %s names no platform", d.Digest)
		}
		platforms = append(platforms, *d.Platform)
		if d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			Blob(tb, dir, d.Digest, &m)
			found = true
		}
	}
	if !found {
		tb.Fatalf("the image has no linux/%s manifest: %v", runtime.GOARCH, platforms)
	}
	var cfg Config
	Blob(tb, dir, m.Config.Digest, &cfg)
	return m, cfg, platforms
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// Binary extracts /driftd from the image's layer for this platform, once per test binary.
func Binary(tb testing.TB) string {
	tb.Helper()
	binaryOnce.Do(func() {
		dir := Dir(tb)
		m, _, _ := Host(tb, dir)
		files, err := LayerFiles(Blob(tb, dir, m.Layers[0].Digest, nil))
		if err != nil {
			binaryErr = err
			return
		}
		f, ok := files["driftd"]
		if !ok {
			binaryErr = fmt.Errorf("the image's layer has no /driftd")
			return
		}
		out, err := os.MkdirTemp("", "driftd-image-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(out, "driftd")
		binaryErr = os.WriteFile(binaryPath, f.Data, 0o755)
	})
	if binaryErr != nil {
		tb.Fatal(binaryErr)
	}
	return binaryPath
}

// LayerFile is a file of a layer.
type LayerFile struct {
	Mode     int64
	UID, GID int
	Dir      bool
	Data     []byte
}

func LayerFiles(gz []byte) (map[string]LayerFile, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string]LayerFile{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "/"), "/")] = LayerFile{Mode: h.Mode, UID: h.Uid, GID: h.Gid, Dir: h.Typeflag == tar.TypeDir, Data: data}
	}
}
