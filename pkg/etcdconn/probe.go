package etcdconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// tlsProbeRead is how long ProbeTLS waits for the server to reject the
// client certificate after the handshake. With TLS 1.3 that rejection
// arrives as an alert after the client considers the handshake done.
const tlsProbeRead = 500 * time.Millisecond

// ProbeTLS opens a TLS connection to each https endpoint with the
// configured files and returns the first handshake failure, such as a
// missing or untrusted client certificate, naming the endpoint and the
// flags to check. etcd's client reports such failures only as timeouts,
// so daemons call this once at start to log a clear cause. Unreachable
// endpoints are not errors here.
func (c *Config) ProbeTLS(ctx context.Context) error {
	if !c.anyHTTPS() {
		return nil
	}
	cfg, err := c.TLS()
	if err != nil {
		return err
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		if err := probeEndpoint(ctx, u.Host, cfg); err != nil {
			return fmt.Errorf("TLS handshake with etcd at %s failed: %w; check "+
				"--etcd-cacert, and --etcd-cert with --etcd-key if etcd "+
				"requires client certificates", ep, err)
		}
	}
	return nil
}

func probeEndpoint(ctx context.Context, host string, cfg *tls.Config) error {
	d := tls.Dialer{Config: cfg.Clone(), NetDialer: &net.Dialer{}}
	conn, err := d.DialContext(ctx, "tcp", host)
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return nil
	}
	if err != nil {
		return err
	}
	defer conn.Close()

	// A server that rejects the client certificate sends an alert now;
	// one that accepted it sends nothing until the client speaks.
	_ = conn.SetReadDeadline(time.Now().Add(tlsProbeRead))
	_, err = conn.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}
