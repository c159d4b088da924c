package infra

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Loopback reports whether host (a name or an address, without a port) is this machine.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SecureVCenter refuses a vCenter server reached in clear: driftd logs in there with a password.
// A server without a scheme is reached over https, as CAPV reaches it; http:// is accepted only
// to this machine (a simulator, a local tunnel).
func SecureVCenter(server string) error {
	if !strings.Contains(server, "://") {
		return nil
	}
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("server %q: %w", server, err)
	}
	switch {
	case strings.EqualFold(u.Scheme, "https"):
		return nil
	case strings.EqualFold(u.Scheme, "http") && Loopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("server %q is not reached over https; driftd sends a vCenter password only over https", server)
}
