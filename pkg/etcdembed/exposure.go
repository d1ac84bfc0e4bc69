package etcdembed

import (
	"log/slog"
	"net"
	"net/url"
)

// exposureReason returns why a member listening for clients on u can be
// read and changed by other hosts, or "" when it cannot. A loopback host
// is private to this machine. Otherwise the member needs TLS, and either
// client certificates or etcd authentication to tell clients apart.
func exposureReason(u *url.URL, clientCertAuth, authEnabled bool) string {
	if isLoopbackHost(u.Hostname()) {
		return ""
	}
	switch {
	case u.Scheme == "http" && !authEnabled:
		return "no TLS and no etcd authentication: anyone who can reach " +
			"the port can read and rewrite every record, the host " +
			"ledgers included"
	case u.Scheme == "http":
		return "no TLS: etcd passwords, tokens and every record cross " +
			"the network in clear text"
	case !clientCertAuth && !authEnabled:
		return "no client certificate check and no etcd authentication: " +
			"anyone who can reach the port can read and rewrite every " +
			"record, the host ledgers included"
	}
	return ""
}

// isLoopbackHost reports whether host, an IP address or name from a
// listen URL, stays on this machine. etcd binds only IP addresses and
// "localhost", so any other name counts as reachable from other hosts.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// warnIfExposed logs a warning when the member serves clients on an
// address that other hosts can use without protection. authEnabled is
// whether etcd authentication is on in the member's data.
func (cfg Config) warnIfExposed(authEnabled bool) {
	u, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return
	}
	reason := exposureReason(u, cfg.ClientCAFile != "", authEnabled)
	if reason == "" {
		return
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Warn("embedded etcd serves clients on an address open to other "+
		"hosts without protection",
		"etcd_client_url", cfg.ClientURL, "reason", reason,
		"fix", "listen on a loopback address such as "+
			"http://127.0.0.1:2379, or serve TLS with client "+
			"certificates (the member's CertFile, KeyFile and "+
			"ClientCAFile settings), or run an external etcd cluster "+
			"with TLS and authentication and pass --etcd-endpoints")
}
