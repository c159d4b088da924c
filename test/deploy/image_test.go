package deploy

import (
	"debug/elf"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/testenv/image"
)

// TestTheImageIsDriftdAloneAsANonRootUser opens the image `make image` built: an index of every
// image.Platform, each one layer holding the static driftd binary and the files a non-root user needs —
// no shell, no package manager, no base image; it runs as a numeric non-root user; the binary out
// of it runs.
func TestTheImageIsDriftdAloneAsANonRootUser(t *testing.T) {
	dir := image.Dir(t)
	m, cfg, platforms := image.Host(t, dir)
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
	files, err := image.LayerFiles(image.Blob(t, dir, m.Layers[0].Digest, nil))
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
	if f := files["driftd"]; f.Mode&0o111 == 0 || f.UID != 0 {
		t.Errorf("/driftd mode %o owner %d", f.Mode, f.UID)
	}
	if f := files["tmp"]; f.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", f.Mode)
	}

	bin := image.Binary(t)
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
