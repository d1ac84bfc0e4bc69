package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/fleet"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
	"github.com/YoungBoyGod/remotegpu/pkg/version"
)

// HTTP server timeouts. Requests are small JSON documents, and an
// allocation takes a few etcd round trips, each bounded by
// --etcd-call-timeout.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// coordinator is a running serve command's parts, in start order.
type coordinator struct {
	log      *slog.Logger
	listener net.Listener
	etcd     *etcdembed.Server
	client   *clientv3.Client
	fleet    *fleet.Fleet
	http     *http.Server
	ops      *ops
}

// runServe starts the coordinator, serves until ctx ends or SIGINT or
// SIGTERM arrives, then shuts down. It returns an error if start-up fails
// or if a part stops on its own.
func runServe(ctx context.Context, o *serveOptions, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c, err := startCoordinator(o, log)
	if err != nil {
		return err
	}
	return c.serve(ctx, o.shutdownTimeout)
}

// startCoordinator takes the listen port first, so that a second
// coordinator with the same --listen fails before it touches etcd's data
// dir, then starts etcd (when embedded), the client and the fleet.
func startCoordinator(o *serveOptions, log *slog.Logger) (_ *coordinator, err error) {
	c := &coordinator{log: log}
	defer func() {
		if err != nil {
			c.closeStores()
		}
	}()

	c.listener, err = net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on --listen %s (is another coordinator running?): %w",
			o.listen, err)
	}

	ops, secured, err := newOps(&o.ops, c.listener, log)
	if err != nil {
		return nil, err
	}
	c.ops, c.listener = ops, secured

	embedded := len(o.etcd.Endpoints) == 0
	if embedded {
		if err := c.startEmbeddedEtcd(o); err != nil {
			return nil, err
		}
	}
	c.client, err = o.etcd.New()
	if err != nil {
		return nil, err
	}
	probeEtcdTLS(&o.etcd, log)

	ks, err := keyspace.New(o.prefix)
	if err != nil {
		return nil, fmt.Errorf("--prefix: %w", err)
	}
	c.fleet, err = fleet.New(fleet.Config{
		Client:               c.client,
		Keyspace:             ks,
		Logger:               log,
		Observer:             c.ops.metrics,
		MaxAttempts:          o.maxAttempts,
		BusyGPUMemoryBytes:   int64(o.busyGPUMemory),
		DefaultAllocationTTL: o.defaultAllocationTTL,
		ReleasedRetention:    o.releasedRetention,
		CallTimeout:          o.etcdCallTimeout,
		LostGracePeriod:      o.lifetime.lostGracePeriod,
		LostReleaseAfter:     o.lifetime.lostReleaseAfter,
	})
	if err != nil {
		return nil, err
	}
	c.ops.metrics.SetSource(c.fleet)

	c.http = &http.Server{
		Handler: server.New(c.ops.serverConfig(
			server.Config{Fleet: c.fleet, Logger: log})),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("coordinator starting", append(o.logAttrs(embedded), "version", version.Version)...)
	return c, nil
}

func (c *coordinator) startEmbeddedEtcd(o *serveOptions) error {
	srv, err := etcdembed.Start(etcdembed.Config{
		Name:           o.etcdName,
		DataDir:        o.dataDir,
		ClientURL:      o.etcdListenClient,
		PeerURL:        o.etcdListenPeer,
		InitialCluster: o.etcdInitialCluster,
		ClusterToken:   o.etcdClusterToken,
		Logger:         c.log,
	})
	if err != nil {
		return err
	}
	c.etcd = srv
	o.etcd.Endpoints = []string{o.etcdListenClient}
	c.log.Info("embedded etcd started", "data_dir", o.dataDir,
		"etcd_client_url", o.etcdListenClient, "etcd_peer_url", o.etcdListenPeer)
	return nil
}

// serve runs the fleet and the HTTP server until ctx ends or a part fails
// (the fleet, the HTTP server or the embedded etcd). Then it shuts down in
// reverse order: HTTP first, so in-flight requests finish, then the fleet,
// the etcd client and the embedded etcd.
func (c *coordinator) serve(ctx context.Context, shutdownTimeout time.Duration) error {
	fleetCtx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- c.fleet.Run(fleetCtx) }()

	httpDone := make(chan error, 1)
	go func() { httpDone <- c.http.Serve(c.listener) }()
	c.log.Info("coordinator serving", "listen", c.listener.Addr().String())
	stopOps := c.ops.start(ctx, c.fleet.Ready, c.http.Handler)

	var etcdFailed <-chan error
	if c.etcd != nil {
		etcdFailed = c.etcd.Err()
	}

	var cause error
	select {
	case <-ctx.Done():
		c.log.Info("coordinator stopping", "reason", context.Cause(ctx))
	case err := <-fleetDone:
		cause = fmt.Errorf("fleet watch stopped: %w", err)
		fleetDone <- nil
	case err := <-httpDone:
		cause = fmt.Errorf("HTTP server stopped: %w", err)
		httpDone <- http.ErrServerClosed
	case err := <-etcdFailed:
		cause = fmt.Errorf("embedded etcd failed: %w", err)
	}
	if cause != nil {
		c.log.Error("coordinator stopping after a failure", "err", cause)
	}

	stopOps()
	shutdownErr := c.shutdown(shutdownTimeout, stopFleet, fleetDone, httpDone)
	c.log.Info("coordinator stopped")
	return errors.Join(cause, shutdownErr)
}

func (c *coordinator) shutdown(timeout time.Duration, stopFleet context.CancelFunc,
	fleetDone, httpDone <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var errs []error
	if err := c.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down HTTP server: %w", err))
		_ = c.http.Close()
	}
	if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("HTTP server: %w", err))
	}
	c.log.Debug("HTTP server stopped")

	stopFleet()
	if err := <-fleetDone; err != nil {
		errs = append(errs, fmt.Errorf("fleet watch: %w", err))
	}
	c.log.Debug("fleet watch stopped")
	c.closeStores()
	return errors.Join(errs...)
}

// closeStores closes the etcd client, the embedded etcd and the listener,
// whichever were started.
func (c *coordinator) closeStores() {
	if c.client != nil {
		if err := c.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
			c.log.Warn("close etcd client", "err", err)
		}
		c.log.Debug("etcd client closed")
	}
	if c.etcd != nil {
		c.etcd.Close()
		c.log.Info("embedded etcd stopped")
	}
	if c.listener != nil {
		// The HTTP server closes the listener itself once it served;
		// this covers a start-up that failed before.
		_ = c.listener.Close()
	}
}
