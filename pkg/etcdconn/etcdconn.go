// Package etcdconn holds the etcd client settings that both daemons take:
// endpoints, TLS files and etcd's own user/password authentication. It never
// logs or returns the password, and it rejects a password or private key
// file that its group or other users may read or write.
package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/YoungBoyGod/remotegpu/pkg/secretfile"
)

// DefaultEndpoint is the client URL of a local etcd, embedded or not.
const DefaultEndpoint = "http://127.0.0.1:2379"

// Config is how to reach etcd.
type Config struct {
	Endpoints    []string
	CACertFile   string
	CertFile     string
	KeyFile      string
	User         string
	PasswordFile string
	// DialTimeout bounds the first connection; later calls carry their own
	// deadlines.
	DialTimeout time.Duration
}

// AddFlags registers the etcd flags on fs. defaultEndpoints may be nil for a
// daemon that runs an embedded server unless endpoints are given.
func (c *Config) AddFlags(fs *pflag.FlagSet, defaultEndpoints []string) {
	fs.StringSliceVar(&c.Endpoints, "etcd-endpoints", defaultEndpoints,
		"comma-separated etcd client URLs")
	fs.StringVar(&c.CACertFile, "etcd-cacert", "",
		"CA bundle that verifies etcd's server certificate")
	fs.StringVar(&c.CertFile, "etcd-cert", "",
		"client certificate for etcd (with --etcd-key)")
	fs.StringVar(&c.KeyFile, "etcd-key", "",
		"private key of --etcd-cert (mode 0600 or stricter)")
	fs.StringVar(&c.User, "etcd-user", "",
		"etcd user name (needs --etcd-password-file)")
	fs.StringVar(&c.PasswordFile, "etcd-password-file", "",
		"file whose first line is the etcd user's password "+
			"(mode 0600 or stricter)")
	fs.DurationVar(&c.DialTimeout, "etcd-dial-timeout", 5*time.Second,
		"time to wait for the first connection to etcd")
}

// Validate checks the settings without touching the network.
func (c *Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("no etcd endpoints: set --etcd-endpoints, e.g. http://127.0.0.1:2379")
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("invalid etcd endpoint %q: use http://HOST:PORT or https://HOST:PORT", ep)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("--etcd-cert and --etcd-key must be given together")
	}
	if (c.User == "") != (c.PasswordFile == "") {
		return errors.New("--etcd-user and --etcd-password-file must be given together")
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("invalid --etcd-dial-timeout %s: must be positive", c.DialTimeout)
	}
	return nil
}

// TLS returns the client TLS configuration, or nil when no TLS file is set
// and every endpoint is plain http.
func (c *Config) TLS() (*tls.Config, error) {
	if c.CACertFile == "" && c.CertFile == "" && !c.anyHTTPS() {
		return nil, nil
	}
	info := transport.TLSInfo{
		TrustedCAFile: c.CACertFile,
		CertFile:      c.CertFile,
		KeyFile:       c.KeyFile,
	}
	for _, f := range []string{c.CACertFile, c.CertFile, c.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("etcd TLS file: %w", err)
		}
	}
	if err := checkCAFile(c.CACertFile); err != nil {
		return nil, err
	}
	if c.KeyFile != "" {
		if err := secretfile.CheckMode(c.KeyFile); err != nil {
			return nil, fmt.Errorf("--etcd-key: %w", err)
		}
	}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load etcd TLS files (ca %q, cert %q, key %q): %w",
			c.CACertFile, c.CertFile, c.KeyFile, err)
	}
	return cfg, nil
}

// checkCAFile rejects a CA bundle without a PEM certificate. etcd's loader
// accepts such a file and yields an empty pool, so every handshake would
// fail later with "unknown authority" instead of naming the file.
func checkCAFile(path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("etcd TLS file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("invalid --etcd-cacert %q: the file contains no "+
			"PEM certificate; give the CA bundle that signed etcd's server "+
			"certificate", path)
	}
	return nil
}

func (c *Config) anyHTTPS() bool {
	for _, ep := range c.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			return true
		}
	}
	return false
}

func (c *Config) password() (string, error) {
	if c.PasswordFile == "" {
		return "", nil
	}
	data, err := secretfile.Read(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("--etcd-password-file: %w", err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("etcd password file %q is empty", c.PasswordFile)
	}
	return pw, nil
}

// ClientConfig builds the clientv3 configuration. The client does not wait
// for a connection, so a daemon can start while etcd is down and retry.
func (c *Config) ClientConfig() (clientv3.Config, error) {
	if err := c.Validate(); err != nil {
		return clientv3.Config{}, err
	}
	tlsCfg, err := c.TLS()
	if err != nil {
		return clientv3.Config{}, err
	}
	pw, err := c.password()
	if err != nil {
		return clientv3.Config{}, err
	}
	return clientv3.Config{
		Endpoints:            c.Endpoints,
		TLS:                  tlsCfg,
		Username:             c.User,
		Password:             pw,
		DialTimeout:          c.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		AutoSyncInterval:     time.Minute,
		// etcd's client logs through zap; keep it quiet, errors reach
		// the caller through return values.
		Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           ReconnectBackoff,
			MinConnectTimeout: c.DialTimeout,
		})},
	}, nil
}

// ReconnectBackoff paces reconnects to etcd. gRPC's default lets the delay
// grow to 120 s, so a daemon would stay disconnected for up to two minutes
// after etcd returns; capping it at 3 s bounds recovery after an outage.
var ReconnectBackoff = backoff.Config{
	BaseDelay:  200 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   3 * time.Second,
}

// New returns a client for the configured cluster.
func (c *Config) New() (*clientv3.Client, error) {
	cfg, err := c.ClientConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("create etcd client for %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	return cli, nil
}

// WaitReachable blocks until a linearizable read succeeds or ctx ends. It
// returns the last error seen.
func WaitReachable(ctx context.Context, cli *clientv3.Client, probeKey string) error {
	var last error
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Get(callCtx, probeKey, clientv3.WithCountOnly())
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd not reachable: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
