package source

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// VerificationError says the head commit is not signed by a trusted key: it is not checked out and
// the last verified checkout stays.
type VerificationError struct {
	// Commit is the refused commit.
	Commit string
	// Reason says what is wrong: unsigned, signed by a key not in the keyring, a bad signature.
	Reason string
}

func (e *VerificationError) Error() string {
	return fmt.Sprintf("commit %s refused: %s; --verify-signatures applies only commits signed by a key of the keyring", e.Commit, e.Reason)
}

// loadKeyring reads an armored OpenPGP keyring and checks that it holds a public key.
func loadKeyring(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	keys, err := openpgp.ReadArmoredKeyRing(strings.NewReader(string(data)))
	if err != nil {
		return "", fmt.Errorf("not an armored OpenPGP keyring: %w", err)
	}
	if len(keys) == 0 {
		return "", errors.New("the keyring holds no key")
	}
	return string(data), nil
}

// descends checks, under the keyring, that target descends from the last verified commit: a server
// (or whoever can push) must not bring back an older signed commit, or a signed commit of another
// branch, and with it retired clusters and old versions.
func (s *Source) descends(repo *git.Repository, target plumbing.Hash) error {
	if s.keyring == "" || s.verified == "" || s.verified == target.String() || s.opts.AllowHistoryRewrite {
		return nil
	}
	refuse := func(why string) error {
		return &VerificationError{Commit: target.String(), Reason: fmt.Sprintf("it does not descend from %s, the last verified commit (%s); --allow-history-rewrite accepts it", s.verified, why)}
	}
	last, err := repo.CommitObject(plumbing.NewHash(s.verified))
	if err != nil {
		return refuse("that commit is no longer in the branch's history: a rewritten history")
	}
	head, err := repo.CommitObject(target)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", target, err)
	}
	ok, err := last.IsAncestor(head)
	if err != nil {
		return fmt.Errorf("walking the history of %s: %w", target, err)
	}
	if !ok {
		if back, _ := head.IsAncestor(last); back {
			return refuse("it is older: a rollback")
		}
		return refuse("it is on another line of history")
	}
	return nil
}

// verify checks that commit target of repo is signed by a key of the keyring.
func (s *Source) verify(repo *git.Repository, target plumbing.Hash) error {
	if s.keyring == "" {
		return nil
	}
	c, err := repo.CommitObject(target)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", target, err)
	}
	if strings.TrimSpace(c.PGPSignature) == "" {
		return &VerificationError{Commit: target.String(), Reason: "it is not signed"}
	}
	if strings.Contains(c.PGPSignature, "BEGIN SSH SIGNATURE") {
		return &VerificationError{Commit: target.String(), Reason: "it carries an SSH signature; driftd verifies OpenPGP signatures"}
	}
	entity, err := c.Verify(s.keyring)
	if err != nil {
		return &VerificationError{Commit: target.String(), Reason: "its signature does not verify against the keyring (" + err.Error() + ")"}
	}
	_ = entity
	return nil
}
