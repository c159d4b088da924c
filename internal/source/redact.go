package source

import (
	"net/url"
	"strings"
)

// RedactURL returns a repository URL without its user information (a token, a password): the
// form driftd prints everywhere — logs, Events, the status, plan output.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Scheme == "" {
		return raw
	}
	if _, hasPassword := u.User.Password(); !hasPassword && (u.Scheme == "ssh" || u.Scheme == "git+ssh") {
		return raw // ssh://git@host: a user name, not a secret
	}
	return u.Scheme + "://REDACTED@" + raw[strings.LastIndex(raw, "@")+1:]
}

// redactor hides a repository's secrets in error messages.
type redactor struct {
	url     string
	secrets []string
}

func newRedactor(rawURL string, secrets ...string) *redactor {
	r := &redactor{url: rawURL}
	if u, err := url.Parse(rawURL); err == nil && u.User != nil && u.Scheme != "" {
		if p, ok := u.User.Password(); ok {
			r.secrets = append(r.secrets, p, url.QueryEscape(p), u.User.String())
		} else if u.Scheme == "http" || u.Scheme == "https" {
			r.secrets = append(r.secrets, u.User.Username()) // https://<token>@host
		}
	}
	for _, s := range secrets {
		if s != "" {
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

// redact returns err with the URL printed without its user information and every secret hidden;
// errors.Is and errors.As still see the original.
func (r *redactor) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := strings.ReplaceAll(msg, r.url, RedactURL(r.url))
	for _, s := range r.secrets {
		if len(s) >= 3 { // a one- or two-letter "secret" would shred the message
			clean = strings.ReplaceAll(clean, s, "REDACTED")
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
