// Command image assembles driftd's container image from binaries built beforehand, with no
// container engine, no registry and no base image: one layer holding the static binary (which
// carries its own CA roots), the files a non-root numeric user expects, and nothing else — no
// shell, no package manager. The result is an OCI image layout holding a multi-platform index, the
// same bytes for the same inputs (every timestamp is the commit's time), ready for `crane push`.
//
// It is a module of its own so that driftd's go.mod does not carry the image tooling.
//
//	go run . -out ../../bin/image -version v0.3.0 -epoch 1764000000 linux/amd64=../../bin/driftd-linux-amd64 ...
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user the image runs as: distroless' "nonroot", by number (Kubernetes' runAsNonRoot checks
// numbers; a name would need /etc/passwd at admission).
const uid, gid = 65532, 65532

func main() {
	out := flag.String("out", "bin/image", "folder of the OCI image layout to write (replaced)")
	version := flag.String("version", "dev", "driftd's version, for the image's labels and tag")
	revision := flag.String("revision", "", "the commit the binaries were built from")
	source := flag.String("source", "https://github.com/driftd/driftd", "the repository, for the image's labels")
	epoch := flag.Int64("epoch", 0, "seconds since 1970 for every timestamp in the image (the commit's time)")
	flag.Parse()
	if flag.NArg() == 0 {
		fail(fmt.Errorf("usage: image [flags] os/arch=binary ..."))
	}
	created := time.Unix(*epoch, 0).UTC()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arg := range flag.Args() {
		platform, binary, ok := strings.Cut(arg, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 {
			fail(fmt.Errorf("%q: want os/arch=binary", arg))
		}
		img, err := image(binary, osName, arch, created, map[string]string{
			"org.opencontainers.image.title":    "driftd",
			"org.opencontainers.image.source":   *source,
			"org.opencontainers.image.version":  *version,
			"org.opencontainers.image.revision": *revision,
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.created":  created.Format(time.RFC3339),
		})
		if err != nil {
			fail(fmt.Errorf("%s: %w", platform, err))
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: osName, Architecture: arch}}})
	}
	if err := os.RemoveAll(*out); err != nil {
		fail(err)
	}
	l, err := layout.Write(*out, empty.Index)
	if err != nil {
		fail(err)
	}
	if err := l.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": *version})); err != nil {
		fail(err)
	}
	digest, err := idx.Digest()
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "digest"), []byte(digest.String()+"\n"), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("image %s: %s\n", *out, digest)
}

// image is one platform's image: the binary as /driftd, run as the non-root user.
func image(binary, osName, arch string, created time.Time, labels map[string]string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	data, err := layerTar(bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "driftd: hack/image", Comment: "the static driftd binary"}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = osName, arch, v1.Time{Time: created}
	cfg.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, gid),
		Entrypoint: []string{"/driftd"},
		Cmd:        []string{"run"},
		WorkingDir: "/",
		Env:        []string{"HOME=/home/nonroot", "TMPDIR=/tmp"},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cfg)
}

// layerTar is the one layer: the binary and what a non-root process expects to find, every entry
// owned by root with fixed times, in a fixed order.
func layerTar(bin []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		dir  bool
		data []byte
		uid  int
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, gid))},
		{name: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", gid))},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: uid},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "driftd", mode: 0o755, data: bin},
	}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: created, Format: tar.FormatPAX,
			Uid: f.uid, Gid: f.uid, Typeflag: tar.TypeReg}
		if f.dir {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}
