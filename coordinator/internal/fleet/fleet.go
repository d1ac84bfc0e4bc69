package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Defaults for Config fields left at zero.
const (
	// DefaultMaxAttempts is the number of compare-and-swap attempts per
	// allocation, release, drain or removal.
	DefaultMaxAttempts = 8
	// DefaultBusyGPUMemoryBytes is the memory use above which a GPU that
	// no allocation holds counts as busy with outside work.
	DefaultBusyGPUMemoryBytes int64 = 1 << 30
	// DefaultCallTimeout bounds each etcd call.
	DefaultCallTimeout = 5 * time.Second
	// DefaultReleasedRetention is how long released allocation records
	// are kept at least.
	DefaultReleasedRetention = 24 * time.Hour
	// DefaultLostGracePeriod is how long a host may be down before its
	// allocations are marked lost.
	DefaultLostGracePeriod = time.Minute
)

// minReleasedRetention keeps the retention lease above etcd's minimum
// lease TTL, which is about 1.5 × the election timeout (2 s by default).
const minReleasedRetention = 2 * time.Second

// Config holds the settings of New. Client and Keyspace are required.
type Config struct {
	// Client talks to etcd. The caller owns it and closes it after Run
	// returned.
	Client *clientv3.Client
	// Keyspace is the key layout of hosts and allocations.
	Keyspace keyspace.Keyspace
	// Logger receives state changes; slog.Default() when nil.
	Logger *slog.Logger
	// Observer receives events for metrics; none when nil.
	Observer Observer

	// MaxAttempts bounds the compare-and-swap attempts of one operation;
	// DefaultMaxAttempts when 0.
	MaxAttempts int
	// BusyGPUMemoryBytes: a GPU that no allocation holds and whose
	// measured memory use is above this many bytes is busy and not handed
	// out; DefaultBusyGPUMemoryBytes when 0.
	BusyGPUMemoryBytes int64
	// DefaultAllocationTTL is the lifetime given to a request with
	// ttl_seconds 0; 0 means until released. It is rounded down to
	// whole seconds.
	DefaultAllocationTTL time.Duration
	// ReleasedRetention is how long released records stay readable, at
	// least; DefaultReleasedRetention when 0.
	ReleasedRetention time.Duration
	// Clock returns the time for timestamps and liveness; time.Now when
	// nil.
	Clock func() time.Time
	// CallTimeout bounds each etcd call; DefaultCallTimeout when 0.
	CallTimeout time.Duration

	// LostGracePeriod is how long a host may be unhealthy, stopped or
	// without a status before its active allocations are marked lost;
	// DefaultLostGracePeriod when 0.
	LostGracePeriod time.Duration
	// LostReleaseAfter releases a lost allocation once this long has
	// passed since it was marked lost; 0 keeps it until an operator
	// releases it or its host returns.
	LostReleaseAfter time.Duration
	// SweepInterval is the period of the sweep that expires, marks lost,
	// restores and releases allocations; 0 derives it from
	// LostGracePeriod and LostReleaseAfter.
	SweepInterval time.Duration
}

// withDefaults validates cfg and fills the zero fields.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Client == nil:
		return cfg, errors.New("fleet config: Client is nil")
	case cfg.Keyspace.Prefix() == "":
		return cfg, errors.New("fleet config: Keyspace is not set; " +
			"create one with keyspace.New")
	case cfg.MaxAttempts < 0:
		return cfg, fmt.Errorf("fleet config: MaxAttempts is %d, "+
			"must be 0 (default %d) or more", cfg.MaxAttempts,
			DefaultMaxAttempts)
	case cfg.BusyGPUMemoryBytes < 0:
		return cfg, fmt.Errorf("invalid --busy-gpu-memory %d: "+
			"must be 0 (default %d) or more bytes",
			cfg.BusyGPUMemoryBytes, DefaultBusyGPUMemoryBytes)
	case cfg.ReleasedRetention < 0 ||
		cfg.ReleasedRetention > 0 && cfg.ReleasedRetention < minReleasedRetention:
		return cfg, fmt.Errorf("fleet config: ReleasedRetention is %s, "+
			"must be 0 (default %s) or at least %s", cfg.ReleasedRetention,
			DefaultReleasedRetention, minReleasedRetention)
	case cfg.CallTimeout < 0:
		return cfg, fmt.Errorf("fleet config: CallTimeout is %s, "+
			"must not be negative", cfg.CallTimeout)
	}
	if err := cfg.checkLifetime(); err != nil {
		return cfg, err
	}
	if err := checkDefaultTTL(cfg.DefaultAllocationTTL); err != nil {
		return cfg, err
	}

	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BusyGPUMemoryBytes == 0 {
		cfg.BusyGPUMemoryBytes = DefaultBusyGPUMemoryBytes
	}
	if cfg.ReleasedRetention == 0 {
		cfg.ReleasedRetention = DefaultReleasedRetention
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.LostGracePeriod == 0 {
		cfg.LostGracePeriod = DefaultLostGracePeriod
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = deriveSweepInterval(cfg.LostGracePeriod,
			cfg.LostReleaseAfter)
	}
	return cfg, nil
}

// Fleet is the coordinator's etcd-backed view and allocator. Create it
// with New and feed it with Run; every method is safe for concurrent use.
type Fleet struct {
	cfg     Config
	client  *clientv3.Client
	ks      keyspace.Keyspace
	log     *slog.Logger
	obs     Observer
	now     func() time.Time
	rankers map[string]ranker
	manager *host.HostManager
	counts  counters

	// mu guards the fields below.
	mu   sync.RWMutex
	view *view
	// ready is set once the first list has been applied.
	ready bool
	// revChanged is closed, and replaced, whenever view.rev advances.
	revChanged chan struct{}
	// reported maps each key logged as invalid to the revision logged,
	// so a key is reported once per revision.
	reported map[string]int64

	lease retentionLease

	// sweepWake requests a sweep. Its buffer has room for one request.
	sweepWake chan struct{}
	// sweeps counts finished sweeps, so tests can wait for the next one.
	sweeps atomic.Uint64

	// beforeWatch, when set by a test, runs before each watch starts.
	beforeWatch func(ctx context.Context)
}

var _ service.Fleet = (*Fleet)(nil)

// ranker is a pkg/host selector that can both pick the best host and
// order all of them. chooseHost uses both.
type ranker interface {
	host.HostSelector
	host.HostRanker
}

// New returns a Fleet that serves nothing until Run has listed etcd once.
func New(cfg Config) (*Fleet, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}

	f := &Fleet{
		cfg:        cfg,
		client:     cfg.Client,
		ks:         cfg.Keyspace,
		log:        cfg.Logger,
		obs:        cfg.Observer,
		now:        cfg.Clock,
		view:       newView(cfg.Keyspace),
		revChanged: make(chan struct{}),
		reported:   make(map[string]int64),
		sweepWake:  make(chan struct{}, 1),
	}
	f.rankers = map[string]ranker{
		api.StrategyLeastUsed:  host.NewLeastUsedSelector(),
		api.StrategyMostFree:   host.NewMostFreeSelector(),
		api.StrategyBinPack:    host.NewBinPackSelector(),
		api.StrategyRoundRobin: host.NewRoundRobinSelector(),
		api.StrategyRandom:     host.NewRandomSelector(),
	}

	// The monitor is never started, because the view records every health
	// change with SetHealth. Its checker serves on-demand checks only.
	monitor := host.NewHealthMonitor(healthChecker{f: f}, 0)
	f.manager = host.NewHostManager(nil, monitor)
	return f, nil
}

// Ready reports whether the first list of etcd has been applied.
func (f *Fleet) Ready() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.ready
}

// Manager returns the pkg/host view of the fleet that the watch keeps up
// to date. Callers must treat it as read-only: the next change in etcd
// overwrites whatever they change.
func (f *Fleet) Manager() *host.HostManager {
	return f.manager
}

// checkReady returns an ErrUnavailable error until the first list.
func (f *Fleet) checkReady() error {
	if f.Ready() {
		return nil
	}
	return fmt.Errorf("%w: the coordinator has not read the fleet from "+
		"etcd yet; retry in a moment", service.ErrUnavailable)
}
