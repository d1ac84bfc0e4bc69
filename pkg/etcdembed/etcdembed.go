// Package etcdembed starts an etcd server inside the calling process, so that
// one machine needs nothing else. It is etcd's own server (embed package of
// go.etcd.io/etcd/server/v3), not a substitute.
//
// Start fails fast, naming the port or folder, when a listen port is taken or
// another process holds the data directory; it never waits forever for a
// server that cannot become ready.
package etcdembed

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// serveStoppedMessage is the message etcd logs at error level for each
// listener that a deliberate Close shuts down. It is no error then.
const serveStoppedMessage = "setting up serving from embedded etcd failed."

// newLogger returns etcd's logger: JSON on stderr at level, dropping the
// listener-closed errors once closing is set.
func newLogger(level string, closing *atomic.Bool) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid etcd log level %q: %w", level, err)
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), lvl)
	return zap.New(&closeFilter{Core: core, closing: closing}), nil
}

// closeFilter is a zap core that drops serveStoppedMessage during Close.
type closeFilter struct {
	zapcore.Core
	closing *atomic.Bool
}

func (f *closeFilter) With(fields []zapcore.Field) zapcore.Core {
	return &closeFilter{Core: f.Core.With(fields), closing: f.closing}
}

func (f *closeFilter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if f.closing.Load() && e.Message == serveStoppedMessage {
		return ce
	}
	if f.Enabled(e.Level) {
		return ce.AddCore(e, f)
	}
	return ce
}

// Config is the embedded member's listen URLs and data directory.
type Config struct {
	// Name is the member name; "default" when empty.
	Name string
	// DataDir holds the member's WAL and database.
	DataDir string
	// ClientURL and PeerURL are listen URLs such as http://127.0.0.1:2379.
	ClientURL string
	PeerURL   string
	// InitialCluster is "name=peerURL,..." for a multi-member cluster;
	// empty starts a single-member cluster.
	InitialCluster string
	// ClusterToken separates clusters that share peers; optional.
	ClusterToken string
	// ReadyTimeout bounds the wait for the member to serve; 30 s when zero.
	ReadyTimeout time.Duration
	// LogLevel is etcd's own log level; "error" when empty.
	LogLevel string
	// BcryptCost is the bcrypt cost of etcd user passwords, 4 to 31;
	// etcd's default (10) when zero. Tests lower it because every login
	// with a password runs one bcrypt comparison on the server.
	BcryptCost uint

	// CertFile and KeyFile, when set, make the client URL serve TLS
	// only; ClientURL must then be https. Peers stay on PeerURL as given.
	CertFile string
	KeyFile  string
	// ClientCAFile, when set with CertFile, makes the member require a
	// client certificate signed by this CA on the client URL.
	ClientCAFile string

	// Logger receives this package's own messages, such as the warning
	// about a client URL open to other hosts; slog.Default() when nil.
	// etcd's own log goes to stderr at LogLevel.
	Logger *slog.Logger
}

// Server is a running embedded member.
type Server struct {
	etcd    *embed.Etcd
	lock    *os.File
	closing *atomic.Bool
	grpc    *grpcServers
}

// grpcServers collects the member's client gRPC servers, which etcd
// creates after the member is ready and hands to Config.ServiceRegister.
type grpcServers struct {
	mu      sync.Mutex
	servers []*grpc.Server
}

func (g *grpcServers) add(s *grpc.Server) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.servers = append(g.servers, s)
}

// stop closes every connection of every server at once and cancels their
// streams, without waiting for the streams to end.
func (g *grpcServers) stop() {
	g.mu.Lock()
	servers := g.servers
	g.mu.Unlock()
	for _, s := range servers {
		s.Stop()
	}
}

// Start launches the member and waits until it serves clients.
func Start(cfg Config) (*Server, error) {
	ec, err := cfg.embedConfig()
	if err != nil {
		return nil, err
	}
	closing := new(atomic.Bool)
	lg, err := newLogger(ec.LogLevel, closing)
	if err != nil {
		return nil, err
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	servers := &grpcServers{}
	ec.ServiceRegister = servers.add
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	for _, u := range []string{cfg.ClientURL, cfg.PeerURL} {
		if err := checkPortFree(u); err != nil {
			lock.Close()
			return nil, err
		}
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("start embedded etcd (data dir %q, clients %s, peers %s): %w",
			cfg.DataDir, cfg.ClientURL, cfg.PeerURL, err)
	}
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	select {
	case <-e.Server.ReadyNotify():
		cfg.warnIfExposed(e.Server.AuthStore().IsAuthEnabled())
		return &Server{etcd: e, lock: lock, closing: closing, grpc: servers}, nil
	case err := <-e.Err():
		e.Close()
		lock.Close()
		return nil, fmt.Errorf("embedded etcd stopped while starting: %w", err)
	case <-time.After(timeout):
		e.Server.Stop()
		e.Close()
		lock.Close()
		return nil, fmt.Errorf("embedded etcd (data dir %q) not ready after %s; "+
			"check that the members in --etcd-initial-cluster can reach each other", cfg.DataDir, timeout)
	}
}

func (cfg Config) embedConfig() (*embed.Config, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded etcd needs a data dir")
	}
	clientURL, err := parseURL("client", cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	peerURL, err := parseURL("peer", cfg.PeerURL)
	if err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	if cfg.Name != "" {
		ec.Name = cfg.Name
	}
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
	} else {
		ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	}
	if cfg.ClusterToken != "" {
		ec.InitialClusterToken = cfg.ClusterToken
	}
	if cfg.BcryptCost != 0 {
		ec.BcryptCost = cfg.BcryptCost
	}
	if err := cfg.clientTLS(ec, clientURL); err != nil {
		return nil, err
	}
	ec.LogLevel = cfg.LogLevel
	if ec.LogLevel == "" {
		ec.LogLevel = "error"
	}
	// Keep an hour of history for watchers that fall behind, then compact.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	return ec, nil
}

// clientTLS sets the client URL's TLS files on ec.
func (cfg Config) clientTLS(ec *embed.Config, clientURL *url.URL) error {
	if cfg.CertFile == "" && cfg.KeyFile == "" && cfg.ClientCAFile == "" {
		return nil
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return errors.New("embedded etcd TLS needs both a certificate " +
			"and a key file")
	}
	if clientURL.Scheme != "https" {
		return fmt.Errorf("embedded etcd client URL %q must be https "+
			"when a TLS certificate is set", cfg.ClientURL)
	}
	ec.ClientTLSInfo = transport.TLSInfo{
		CertFile:       cfg.CertFile,
		KeyFile:        cfg.KeyFile,
		TrustedCAFile:  cfg.ClientCAFile,
		ClientCertAuth: cfg.ClientCAFile != "",
	}
	return nil
}

func parseURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("invalid etcd %s URL %q: use http://HOST:PORT", what, raw)
	}
	return u, nil
}

// checkPortFree reports a taken port by name before etcd tries it, because
// etcd's own error does not say which of its listeners failed.
func checkPortFree(raw string) error {
	u, _ := url.Parse(raw)
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("etcd listen address %s is not available (is another etcd or "+
			"coordinator running?): %w", u.Host, err)
	}
	return l.Close()
}

// lockDir takes an exclusive, non-blocking lock on the data dir so that a
// second process fails at once instead of waiting on etcd's own file locks.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "remotegpu.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file in etcd data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("etcd data dir %q is in use by another process "+
			"(lock %s): %w; stop it or choose another --data-dir", dir, path, err)
	}
	return f, nil
}

// ClientURL returns the URL clients connect to.
func (s *Server) ClientURL() string {
	return s.etcd.Clients[0].Addr().String()
}

// Err returns a channel that receives a fatal server error. Once Close
// has begun it may also receive the nil or listener-closed results of the
// client servers that Close stops, so stop reading it before Close.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member and releases the data dir. It is safe to call twice.
//
// Close first cuts open client streams, such as agents' watches and lease
// keepalives, instead of waiting up to etcd's request timeout (about 7 s
// with default election settings) for them to end. It then stops the etcd
// server, and with it raft and the lessor, so no lease expires during the
// rest of the shutdown, and after a restart etcd's new leader renews every
// lease to its full TTL. The streams go first because a stream's request
// in flight, such as a lease renewal, can keep the server from stopping
// until the client gives up.
//
// NOTE: in a cluster of several members, stopping the leader first hands
// leadership to another member, which can take up to that request timeout.
func (s *Server) Close() {
	if s.etcd != nil {
		s.closing.Store(true)
		// In etcd v3.7.3, embed.Etcd.Close then finds the gRPC servers
		// stopped, so its graceful stop returns at once. Its own call of
		// EtcdServer.Stop returns at once too, because the server has
		// already stopped.
		s.grpc.stop()
		s.etcd.Server.Stop()
		s.etcd.Close()
		s.etcd = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}
