package source

import (
	"fmt"
	"os"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// authMethod builds go-git's credentials from opts: basic auth for HTTPS, a private key and the
// known_hosts file for SSH, none for local repositories.
// The password or token it read is returned too, so that no message ever shows it.
func authMethod(opts Options) (transport.AuthMethod, string, error) {
	switch kindOf(opts.URL) {
	case kindHTTP:
		password, err := secret(opts.PasswordFile, EnvGitPassword)
		if err != nil {
			return nil, "", fmt.Errorf("--git-password-file: %w", err)
		}
		if password == "" {
			if password, err = secret(opts.TokenFile, EnvGitToken); err != nil {
				return nil, "", fmt.Errorf("--git-token-file: %w", err)
			}
		}
		if password == "" && opts.Username == "" {
			return nil, "", nil
		}
		user := opts.Username
		if user == "" {
			user = "git" // hosts accept any user name with a token
		}
		return &http.BasicAuth{Username: user, Password: password}, password, nil
	case kindSSH:
		ep, err := transport.NewEndpoint(opts.URL)
		if err != nil {
			return nil, "", fmt.Errorf("repository %s: %w", RedactURL(opts.URL), err)
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := ssh.NewPublicKeysFromFile(user, opts.SSHKeyFile, os.Getenv(EnvSSHKeyPassphrase))
		if err != nil {
			return nil, "", fmt.Errorf("--git-ssh-key-file %s: %w", opts.SSHKeyFile, err)
		}
		callback, err := ssh.NewKnownHostsCallback(opts.KnownHostsFile)
		if err != nil {
			return nil, "", fmt.Errorf("--git-known-hosts-file %s: %w", opts.KnownHostsFile, err)
		}
		keys.HostKeyCallback = callback
		return keys, "", nil
	}
	return nil, "", nil
}
