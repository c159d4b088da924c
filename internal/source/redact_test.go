package source

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://oauth2:glpat-s3cr3t@git.example.com/platform/fleet.git", "https://REDACTED@git.example.com/platform/fleet.git"},
		{"https://ghp_t0ken@github.com/org/fleet", "https://REDACTED@github.com/org/fleet"},
		{"https://git.example.com/platform/fleet.git", "https://git.example.com/platform/fleet.git"},
		{"ssh://git@git.example.com/platform/fleet.git", "ssh://git@git.example.com/platform/fleet.git"},
		{"git@git.example.com:platform/fleet.git", "git@git.example.com:platform/fleet.git"},
		{"/srv/fleet", "/srv/fleet"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactorHidesEverySecretAndKeepsTheError(t *testing.T) {
	sentinel := errors.New("authentication required")
	url := "https://oauth2:glpat-s3cr3t@git.example.com/fleet.git"
	r := newRedactor(url, "token-from-file")
	err := fmt.Errorf("fetching %s: Get %q: %w (credentials oauth2:glpat-s3cr3t, token-from-file)", url, url+"/info/refs", sentinel)
	got := r.redact(err)
	for _, secret := range []string{"glpat-s3cr3t", "token-from-file"} {
		if strings.Contains(got.Error(), secret) {
			t.Errorf("%q shows %q", got, secret)
		}
	}
	if !strings.Contains(got.Error(), "git.example.com/fleet.git") {
		t.Errorf("%q no longer names the repository", got)
	}
	if !errors.Is(got, sentinel) {
		t.Error("the redacted error no longer wraps the original")
	}
}

func FuzzRedactURL(f *testing.F) {
	f.Add("https://user:pass@host/repo")
	f.Add("http://@/")
	f.Add("ssh://git@host:22/x")
	f.Add("https://a:b@c@d/e")
	f.Fuzz(func(t *testing.T, raw string) {
		out := RedactURL(raw)
		u, err := url.Parse(raw)
		if err != nil || u.User == nil || u.Scheme == "" {
			return
		}
		p, ok := u.User.Password()
		if !ok || len(p) < 3 || strings.Count(raw, p) > 1 {
			return
		}
		if strings.Contains(out, p) {
			t.Errorf("RedactURL(%q) = %q keeps the password %q", raw, out, p)
		}
	})
}
