package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/auth"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/metrics"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdconn"
	"github.com/YoungBoyGod/remotegpu/pkg/sdnotify"
	"github.com/YoungBoyGod/remotegpu/pkg/secretfile"
)

// opsOptions are the serve flags for API security.
type opsOptions struct {
	tlsCertFile   string
	tlsKeyFile    string
	authTokenFile string
}

func (o *opsOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.tlsCertFile, "tls-cert-file", "",
		"PEM certificate (chain) of the HTTP API; with --tls-key-file the API "+
			"serves HTTPS only")
	fs.StringVar(&o.tlsKeyFile, "tls-key-file", "",
		"PEM private key of --tls-cert-file")
	fs.StringVar(&o.authTokenFile, "auth-token-file", "",
		"file with the bearer token that every request changing state must "+
			"send; reads, /healthz, /readyz and /metrics stay open")
}

func (o *opsOptions) validate() error {
	if (o.tlsCertFile == "") != (o.tlsKeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together: " +
			"set both for HTTPS or neither for HTTP")
	}
	return nil
}

// ops holds the parts of a coordinator that serve operators: metrics,
// systemd notifications and the optional token.
type ops struct {
	metrics *metrics.Metrics
	notify  *sdnotify.Notifier
	token   *auth.Token
}

// newOps loads the token file, if any, and wraps l in TLS when a
// certificate is set. It logs a warning when the API listens beyond
// loopback without a token.
func newOps(o *opsOptions, l net.Listener, log *slog.Logger) (*ops, net.Listener, error) {
	p := &ops{metrics: metrics.New(), notify: sdnotify.New(log)}
	if o.authTokenFile != "" {
		tok, err := auth.LoadToken(o.authTokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--auth-token-file: %w", err)
		}
		p.token = &tok
	}
	if p.token == nil && !isLoopback(l.Addr()) {
		log.Warn("the API listens beyond loopback without --auth-token-file: "+
			"anyone who reaches it can allocate, release, drain and remove hosts",
			"listen", l.Addr().String())
	}
	log.Info("API security", "tls", o.tlsCertFile != "",
		"auth_token", p.token != nil)
	if o.tlsCertFile == "" {
		return p, l, nil
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCertFile, o.tlsKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load --tls-cert-file %q and --tls-key-file %q: %w",
			o.tlsCertFile, o.tlsKeyFile, err)
	}
	if err := secretfile.CheckMode(o.tlsKeyFile); err != nil {
		return nil, nil, fmt.Errorf("--tls-key-file: %w", err)
	}
	return p, tls.NewListener(l, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}), nil
}

// isLoopback reports whether addr is a loopback IP address. An
// unspecified address such as 0.0.0.0 listens on every interface and is
// not loopback.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// serverConfig adds the metrics route and the token check to cfg.
func (p *ops) serverConfig(cfg server.Config) server.Config {
	cfg.Extra = map[string]http.Handler{"GET /metrics": p.metrics.Handler()}
	if p.token != nil {
		cfg.WrapMutating = auth.RequireBearer(*p.token)
	}
	return cfg
}

// readyPoll is how often start checks whether the fleet has read etcd.
const readyPoll = 100 * time.Millisecond

// start sends READY=1 once ready reports true, then keeps the systemd
// watchdog fed while probe passes, until ctx ends. The returned function
// sends STOPPING=1, stops both loops and waits for them.
func (p *ops) start(ctx context.Context, ready func() bool,
	probe http.Handler) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.notifyWhenReady(ctx, ready) })
	wg.Go(func() {
		p.notify.Watchdog(ctx, func(cctx context.Context) error {
			return healthProbe(cctx, probe)
		})
	})
	return func() {
		p.notify.Stopping()
		cancel()
		wg.Wait()
	}
}

func (p *ops) notifyWhenReady(ctx context.Context, ready func() bool) {
	p.notify.Status("reading the fleet from etcd")
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	p.notify.Status("serving")
	p.notify.Ready()
}

// healthProbe sends GET /readyz to the API handler in-process. It fails
// when the handler does not answer 200 before ctx ends, for example
// because the fleet's view lock is stuck or the view was never read.
//
// NOTE: a probe stuck in the handler keeps its goroutine; the watchdog
// then stops pinging and systemd restarts the process.
func healthProbe(ctx context.Context, h http.Handler) error {
	done := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil)
		h.ServeHTTP(rec, req)
		done <- rec.Code
	}()
	select {
	case code := <-done:
		if code != http.StatusOK {
			return fmt.Errorf("GET /readyz returned %d", code)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("GET /readyz timed out: %w", ctx.Err())
	}
}

// tlsProbeTimeout bounds the start-up check of etcd's TLS settings.
const tlsProbeTimeout = 3 * time.Second

// probeEtcdTLS logs a TLS handshake failure with etcd, which the etcd
// client would only report as timeouts. The coordinator starts anyway and
// keeps retrying.
func probeEtcdTLS(cfg *etcdconn.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), tlsProbeTimeout)
	defer cancel()
	if err := cfg.ProbeTLS(ctx); err != nil {
		log.Error("etcd rejects this coordinator's TLS settings", "error", err)
	}
}
