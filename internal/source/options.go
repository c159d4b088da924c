package source

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Environment variables that carry secrets, so that they never appear on a command line.
const (
	// EnvGitPassword is the password for basic auth over HTTPS.
	EnvGitPassword = "DRIFTD_GIT_PASSWORD"
	// EnvGitToken is an access token for HTTPS, sent as the basic-auth password.
	EnvGitToken = "DRIFTD_GIT_TOKEN"
	// EnvSSHKeyPassphrase unlocks an encrypted SSH private key.
	EnvSSHKeyPassphrase = "DRIFTD_GIT_SSH_KEY_PASSPHRASE"
)

// Options say where the fleet repository is and how to reach it. Secrets are files or
// environment variables, never values.
type Options struct {
	// URL is https://, http://, ssh://, scp-style user@host:path, file:// or a local path.
	URL string
	// Ref is a branch, a tag or a full commit SHA. Empty means the remote's default branch (HEAD).
	Ref string
	// CacheDir holds the clone between fetches. Empty means a folder under os.TempDir().
	CacheDir string
	// Timeout bounds one fetch. Zero means 2 minutes.
	Timeout time.Duration

	// Username for basic auth over HTTPS; "git" when only a token is given.
	Username string
	// PasswordFile holds the basic-auth password (else EnvGitPassword).
	PasswordFile string
	// TokenFile holds an access token (else EnvGitToken).
	TokenFile string
	// CAFile is a PEM bundle to trust for HTTPS besides the system's.
	CAFile string

	// SSHKeyFile is the private key for ssh:// and scp-style URLs.
	SSHKeyFile string
	// KnownHostsFile lists the SSH host keys to trust; required for SSH.
	KnownHostsFile string

	// VerifyKeyringFile, when set, holds armored OpenPGP public keys: only a head commit signed by
	// one of them is checked out, and (once one was verified) only one that descends from the last
	// verified commit.
	VerifyKeyringFile string
	// AllowHistoryRewrite accepts, under VerifyKeyringFile, a signed head that does not descend from
	// the last verified commit (an intended rollback or force-push).
	AllowHistoryRewrite bool
}

// Validate checks the options without touching the network, naming the option that is wrong.
func (o Options) Validate() error {
	if o.URL == "" {
		return errors.New("--repo is required")
	}
	switch kindOf(o.URL) {
	case kindSSH:
		if o.KnownHostsFile == "" {
			return fmt.Errorf("repository %s is reached over SSH: --git-known-hosts-file is required (host keys are always checked)", RedactURL(o.URL))
		}
		if o.SSHKeyFile == "" {
			return fmt.Errorf("repository %s is reached over SSH: --git-ssh-key-file is required", RedactURL(o.URL))
		}
	case kindLocal:
		if _, err := os.Stat(localPath(o.URL)); err != nil {
			return fmt.Errorf("repository %s: %w", o.URL, err)
		}
	}
	if o.PasswordFile != "" && o.TokenFile != "" {
		return errors.New("--git-password-file and --git-token-file exclude each other")
	}
	return nil
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 2 * time.Minute
	}
	return o.Timeout
}

type urlKind int

const (
	kindHTTP urlKind = iota
	kindSSH
	kindLocal
)

func kindOf(url string) urlKind {
	switch {
	case strings.HasPrefix(url, "https://"), strings.HasPrefix(url, "http://"):
		return kindHTTP
	case strings.HasPrefix(url, "ssh://"):
		return kindSSH
	case strings.HasPrefix(url, "file://"):
		return kindLocal
	}
	// scp-style user@host:path, as git reads it: a colon before any slash.
	if i := strings.Index(url, ":"); i > 0 && !strings.Contains(url[:i], "/") {
		return kindSSH
	}
	return kindLocal
}

func localPath(url string) string { return strings.TrimPrefix(url, "file://") }

// secret reads a secret from file when set, else from the environment variable env.
func secret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv(env), nil
}
