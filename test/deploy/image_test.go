package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/driftd/driftd/internal/testenv"
)

// The OCI image layout `make image` writes, read with the standard library alone: an independent
// reader of what go-containerregistry assembled.

type descriptor struct {
	MediaType string            `json:"mediaType"`
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	Platform  *platform         `json:"platform,omitempty"`
	Annots    map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
}

type imageIndex struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"`
}

type manifest struct {
	Config descriptor   `json:"config"`
	Layers []descriptor `json:"layers"`
}

type imageConfig struct {
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

// imageDir is the OCI layout `make image` wrote (make test builds it first).
func imageDir(tb testing.TB) string {
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
func blob(tb testing.TB, dir, digest string, into any) []byte {
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

// hostImage returns the manifest and config of the image for this machine's platform.
func hostImage(tb testing.TB, dir string) (manifest, imageConfig, []platform) {
	tb.Helper()
	var top imageIndex
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(raw, &top); err != nil || len(top.Manifests) != 1 {
		tb.Fatalf("index.json: want one image index, got %s (%v)", raw, err)
	}
	var idx imageIndex
	blob(tb, dir, top.Manifests[0].Digest, &idx)
	var platforms []platform
	var m manifest
	var found bool
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			tb.Fatalf("manifest %s names no platform", d.Digest)
		}
		platforms = append(platforms, *d.Platform)
		if d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			blob(tb, dir, d.Digest, &m)
			found = true
		}
	}
	if !found {
		tb.Fatalf("the image has no linux/%s manifest: %v", runtime.GOARCH, platforms)
	}
	var cfg imageConfig
	blob(tb, dir, m.Config.Digest, &cfg)
	return m, cfg, platforms
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// imageBinary extracts /driftd from the image's layer for this platform, once per test binary.
func imageBinary(tb testing.TB) string {
	tb.Helper()
	binaryOnce.Do(func() {
		dir := imageDir(tb)
		m, _, _ := hostImage(tb, dir)
		files, err := layerFiles(blob(tb, dir, m.Layers[0].Digest, nil))
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
		binaryErr = os.WriteFile(binaryPath, f.data, 0o755)
	})
	if binaryErr != nil {
		tb.Fatal(binaryErr)
	}
	return binaryPath
}

type layerFile struct {
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

func layerFiles(gz []byte) (map[string]layerFile, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string]layerFile{}
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
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "/"), "/")] = layerFile{mode: h.Mode, uid: h.Uid, gid: h.Gid, dir: h.Typeflag == tar.TypeDir, data: data}
	}
}

// TestTheImageIsDriftdAloneAsANonRootUser opens the image `make image` built: an index of every
// platform, each one layer holding the static driftd binary and the files a non-root user needs —
// no shell, no package manager, no base image; it runs as a numeric non-root user; the binary out
// of it runs.
func TestTheImageIsDriftdAloneAsANonRootUser(t *testing.T) {
	dir := imageDir(t)
	m, cfg, platforms := hostImage(t, dir)
	t.Logf("platforms %v", platforms)
	if cfg.Config.User != "65532:65532" {
		t.Errorf("User %q, want the numeric non-root 65532:65532 (runAsNonRoot checks numbers)", cfg.Config.User)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/driftd" {
		t.Errorf("Entrypoint %v, want /driftd (no shell in between)", cfg.Config.Entrypoint)
	}
	if cfg.Config.Labels["org.opencontainers.image.source"] == "" || cfg.Config.Labels["org.opencontainers.image.version"] == "" {
		t.Errorf("labels %v lack the source or the version", cfg.Config.Labels)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers, want the one holding driftd", len(m.Layers))
	}
	files, err := layerFiles(blob(t, dir, m.Layers[0].Digest, nil))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if got, want := strings.Join(names, " "), "driftd etc etc/group etc/passwd home home/nonroot tmp"; got != want {
		t.Errorf("the layer holds %s, want %s (no shell, nothing else)", got, want)
	}
	if f := files["driftd"]; f.mode&0o111 == 0 || f.uid != 0 {
		t.Errorf("/driftd mode %o owner %d", f.mode, f.uid)
	}
	if f := files["tmp"]; f.mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", f.mode)
	}

	bin := imageBinary(t)
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader; the image has none (build with CGO_ENABLED=0)")
		}
	}
	_ = ef.Close()
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), cfg.Config.Labels["org.opencontainers.image.version"]) {
		t.Errorf("driftd version from the image: %v: %s", err, out)
	}
}
