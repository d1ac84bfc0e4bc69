package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/agent/internal/config"
	"github.com/YoungBoyGod/remotegpu/agent/internal/heartbeat"
	"github.com/YoungBoyGod/remotegpu/agent/internal/metrics"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
	"github.com/YoungBoyGod/remotegpu/pkg/sdnotify"
)

// defaultMetricsListen keeps the metrics on loopback unless the operator
// opens them up.
const defaultMetricsListen = "127.0.0.1:9400"

// opsOptions are the run flags for monitoring.
type opsOptions struct {
	metricsListen string
}

func (o *opsOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.metricsListen, "metrics-listen", defaultMetricsListen,
		"host:port of the Prometheus /metrics endpoint; empty turns it off")
}

func (o *opsOptions) validate() error {
	if o.metricsListen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(o.metricsListen); err != nil {
		return fmt.Errorf("invalid --metrics-listen %q: use host:port, "+
			"e.g. %s, or an empty value to turn metrics off",
			o.metricsListen, defaultMetricsListen)
	}
	return nil
}

// monitor connects the heartbeat loop to metrics and to systemd: it
// counts the loop's events, marks its progress for the watchdog and
// reports registration changes as systemd status lines.
type monitor struct {
	metrics  *metrics.Metrics
	progress *sdnotify.Progress
	notify   *sdnotify.Notifier
	hostID   string
}

var _ heartbeat.Observer = (*monitor)(nil)

func newMonitor(info keyspace.HostInfo, log *slog.Logger) *monitor {
	return &monitor{
		metrics:  metrics.New(info),
		progress: sdnotify.NewProgress(nil),
		notify:   sdnotify.New(log),
		hostID:   info.ID,
	}
}

// Registered records a new registration.
func (m *monitor) Registered(lease clientv3.LeaseID) {
	m.progress.Mark()
	m.metrics.Registered(lease)
	m.notify.Status(fmt.Sprintf("registered host %s under lease %x",
		m.hostID, int64(lease)))
}

// RegistrationLost records a lost registration.
func (m *monitor) RegistrationLost(err error) {
	m.progress.Mark()
	m.metrics.RegistrationLost(err)
	m.notify.Status("registration of host " + m.hostID +
		" lost; registering again")
}

// StatusWritten records a status write.
func (m *monitor) StatusWritten(reason string) {
	m.progress.Mark()
	m.metrics.StatusWritten(reason)
}

// EtcdError records a failed etcd call. Only the operation reaches
// systemd, because error texts may name endpoints and users.
func (m *monitor) EtcdError(op string, err error) {
	m.progress.Mark()
	m.metrics.EtcdError(op, err)
	m.notify.Status("etcd call " + op + " failed; retrying")
}

// sample wraps the host's sampler so that every read counts as progress
// and feeds the gauges.
func (m *monitor) sample(
	next func(context.Context) (keyspace.HostStatus, error),
) func(context.Context) (keyspace.HostStatus, error) {
	return func(ctx context.Context) (keyspace.HostStatus, error) {
		st, err := next(ctx)
		m.progress.Mark()
		if err == nil {
			m.metrics.ObserveSample(st)
		}
		return st, err
	}
}

// stallLimit bounds the time between two events of a healthy heartbeat
// loop. The longest quiet stretch is a registration that waits for
// another agent's lease (up to 1.5 TTL), then a retry backoff and a
// sample, each etcd call bounded by TTL/3.
func stallLimit(cfg *config.Config) time.Duration {
	return 3*cfg.TTL + heartbeat.MaxRetryBackoff + 2*cfg.Interval
}

// start serves metrics and runs the watchdog until ctx ends. The returned
// function stops both and waits for them.
func (m *monitor) start(ctx context.Context, cfg *config.Config,
	listen string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if listen != "" {
		serveMetrics(ctx, &wg, listen, m.metrics.Handler(), log)
	}

	limit := stallLimit(cfg)
	if timeout, ok := sdnotify.WatchdogInterval(); ok {
		limit = max(limit, 2*timeout)
	}
	wg.Go(func() {
		m.notify.Watchdog(ctx, func(context.Context) error {
			return m.progress.Check(limit)
		})
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// metricsShutdownTimeout bounds the wait for scrapes in flight at exit,
// so that the agent still exits within about a second of SIGTERM.
const metricsShutdownTimeout = 500 * time.Millisecond

// serveMetrics serves /metrics on listen until ctx ends. A listen error
// is logged and leaves metrics off: the agent's work, keeping the host
// registered, goes on without them.
func serveMetrics(ctx context.Context, wg *sync.WaitGroup, listen string,
	h http.Handler, log *slog.Logger) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		log.Error("metrics endpoint not started; set another "+
			"--metrics-listen or an empty one to turn metrics off",
			"metrics_listen", listen, "error", err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("metrics endpoint serving", "metrics_listen", l.Addr().String())

	wg.Go(func() {
		err := srv.Serve(l)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "error", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(),
			metricsShutdownTimeout)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
	})
}

// tlsProbeTimeout bounds the start-up check of etcd's TLS settings.
const tlsProbeTimeout = 3 * time.Second

// probeEtcdTLS logs a TLS handshake failure with etcd, which the etcd
// client would only report as timeouts. The agent runs on regardless and
// keeps retrying, so that fixing etcd's side needs no agent restart.
func probeEtcdTLS(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	if err := cfg.Etcd.ProbeTLS(ctx); err != nil {
		log.Error("etcd rejects this agent's TLS settings", "error", err)
	}
}
