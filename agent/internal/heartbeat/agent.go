package heartbeat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// StopTimeout bounds the whole deregistration on shutdown: the transaction
// that marks the host stopped and the lease revocation.
const StopTimeout = time.Second

// ErrHostIDInUse is wrapped by the error Run returns when another running
// agent holds the host's status key.
var ErrHostIDInUse = errors.New("host ID already registered by a running agent")

// HostIDInUseError identifies the running agent that holds the host ID.
type HostIDInUseError struct {
	HostID     string
	InstanceID string
	LeaseID    clientv3.LeaseID
}

func (e *HostIDInUseError) Error() string {
	return fmt.Sprintf("host ID %q is already registered by a running "+
		"agent (instance %s, lease %x); give this agent another --host-id",
		e.HostID, e.InstanceID, int64(e.LeaseID))
}

// Unwrap makes errors.Is(err, ErrHostIDInUse) true.
func (e *HostIDInUseError) Unwrap() error { return ErrHostIDInUse }

// Observer receives the agent's state changes, for metrics. Its methods
// are called from Run's goroutine and must not block.
type Observer interface {
	// Registered is called after each successful registration.
	Registered(lease clientv3.LeaseID)
	// RegistrationLost is called when a registration ends for a reason
	// other than shutdown.
	RegistrationLost(err error)
	// StatusWritten is called after each status write, with one of the
	// Write* reasons.
	StatusWritten(reason string)
	// EtcdError is called for each failed etcd call; op names the call.
	EtcdError(op string, err error)
}

// NopObserver ignores every event.
type NopObserver struct{}

var _ Observer = NopObserver{}

// Registered does nothing.
func (NopObserver) Registered(clientv3.LeaseID) {}

// RegistrationLost does nothing.
func (NopObserver) RegistrationLost(error) {}

// StatusWritten does nothing.
func (NopObserver) StatusWritten(string) {}

// EtcdError does nothing.
func (NopObserver) EtcdError(string, error) {}

// Config configures an Agent. Client, Keyspace, Info, Sample and the
// durations are required; the rest have defaults.
type Config struct {
	Client   *clientv3.Client
	Keyspace keyspace.Keyspace
	// Info is the registration document. The agent sets InstanceID,
	// RegisteredAt and StoppedAt; Info.ID is the host ID.
	Info keyspace.HostInfo
	// Sample reads the host's current status. The agent sets InstanceID
	// and HeartbeatAt.
	Sample func(ctx context.Context) (keyspace.HostStatus, error)

	TTL               time.Duration
	Interval          time.Duration
	StatusMaxInterval time.Duration
	// ChangeThreshold is in percentage points; see changeDetector.
	ChangeThreshold float64

	Logger   *slog.Logger
	Observer Observer
	// Now is the clock for document timestamps and write decisions.
	Now func() time.Time
	// Random returns a number in [0, 1) for backoff jitter.
	Random func() float64
}

// Agent keeps one host registered. Create it with New and call Run once.
type Agent struct {
	cfg        Config
	cli        *clientv3.Client
	log        *slog.Logger
	obs        Observer
	instanceID string
	statusKey  string
	infoKey    string
	backoff    backoff
	change     changeDetector
	// callTimeout bounds each etcd call.
	callTimeout time.Duration

	// registered is set by the first successful registration, and outage
	// counts failed status writes; only Run's goroutine uses them.
	registered bool
	outage     writeOutage
}

// New checks cfg and returns an Agent with a fresh random instance ID.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil || cfg.Sample == nil {
		return nil, errors.New("heartbeat: Client and Sample are required")
	}
	if err := keyspace.ValidID(cfg.Info.ID); err != nil {
		return nil, fmt.Errorf("heartbeat: host id: %w", err)
	}
	if cfg.TTL < time.Second || cfg.Interval <= 0 ||
		cfg.StatusMaxInterval < cfg.Interval {
		return nil, fmt.Errorf("heartbeat: invalid timing: ttl %s, "+
			"interval %s, status max interval %s",
			cfg.TTL, cfg.Interval, cfg.StatusMaxInterval)
	}
	cfg.setDefaults()

	id, err := newInstanceID()
	if err != nil {
		return nil, err
	}
	hostID := cfg.Info.ID
	cfg.Info.InstanceID = id
	return &Agent{
		cfg:         cfg,
		cli:         cfg.Client,
		log:         cfg.Logger.With("host_id", hostID, "instance_id", id),
		obs:         cfg.Observer,
		instanceID:  id,
		statusKey:   cfg.Keyspace.HostStatus(hostID),
		infoKey:     cfg.Keyspace.HostInfo(hostID),
		backoff:     newBackoff(cfg.TTL, cfg.Random),
		change:      newChangeDetector(cfg.ChangeThreshold, cfg.Info),
		callTimeout: max(time.Second, cfg.TTL/3),
	}, nil
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func newInstanceID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate instance ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// InstanceID returns the random ID of this agent process, stored in both
// documents.
func (a *Agent) InstanceID() string { return a.instanceID }

// Run registers the host and keeps it registered until ctx ends, then
// deregisters it (see the package documentation) and returns nil. It
// returns early only with an error wrapping ErrHostIDInUse. Run must be
// called once.
func (a *Agent) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		sess, err := a.register(ctx)
		if err == nil {
			attempt = 0
			err = a.serve(ctx, sess)
			sess.close()
			if ctx.Err() != nil {
				a.deregister(sess)
				return nil
			}
			a.obs.RegistrationLost(err)
		} else if a.outage.active() {
			// A registration writes the status too, so it counts as
			// one more failed write of the outage.
			a.outage.fail(a.cfg.Now())
		}
		if errors.Is(err, ErrHostIDInUse) {
			return err
		}
		if ctx.Err() != nil {
			a.log.Info("stopped before registering")
			return nil
		}

		delay := a.backoff.delay(attempt)
		a.log.Warn("not registered; retrying",
			"error", a.explainUnreachable(err),
			"attempt", attempt+1, "retry_in", delay.Round(time.Millisecond))
		if !sleepCtx(ctx, delay) {
			a.log.Info("stopped before registering")
			return nil
		}
	}
}

// call returns a context for one etcd call.
func (a *Agent) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.callTimeout)
}

// sleepCtx waits for d and reports whether ctx is still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
