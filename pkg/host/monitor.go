package host

import (
	"context"
	"sync"
	"time"
)

// DefaultHealthCheckInterval is the interval NewHealthMonitor uses when
// given an interval of 0 or less.
const DefaultHealthCheckInterval = 30 * time.Second

// hostSource is the set of hosts a HealthMonitor checks, implemented by
// the HostManager it is attached to.
type hostSource interface {
	// snapshotHosts returns copies of the hosts registered now.
	snapshotHosts() []*HostInfo
	// recordHealth stores a result; results for hosts that are no longer
	// registered are dropped.
	recordHealth(result HealthCheckResult)
}

// HealthMonitor checks every host of the HostManager it is attached to,
// once right after Start and then once per interval. Each round checks the
// hosts registered when the round begins, one after another, and stores
// each result both in the monitor and in the manager, where an unhealthy
// result excludes the host from selection.
//
// A monitor is attached by passing it to NewHostManager. Until then its
// rounds check nothing. All methods are safe for concurrent use.
type HealthMonitor struct {
	checker  HealthChecker
	interval time.Duration

	// mu guards the fields below.
	mu     sync.Mutex
	source hostSource
	// results contains the latest result per host ID. A completed round
	// drops hosts it did not check.
	results map[string]HealthCheckResult
	// cancel stops the running loop; it is nil while no loop runs.
	cancel context.CancelFunc
	// done is closed by the loop goroutine when it returns. It stays set
	// after Stop, so a later Stop waits on the same, closed, channel.
	done chan struct{}
}

// NewHealthMonitor returns a stopped monitor that runs checker every
// interval. A nil checker is replaced by a SimpleHealthChecker with
// DefaultHealthCheckTimeout, and an interval of 0 or less by
// DefaultHealthCheckInterval.
func NewHealthMonitor(
	checker HealthChecker, interval time.Duration,
) *HealthMonitor {
	if checker == nil {
		checker = NewSimpleHealthChecker(DefaultHealthCheckTimeout)
	}
	if interval <= 0 {
		interval = DefaultHealthCheckInterval
	}
	return &HealthMonitor{
		checker:  checker,
		interval: interval,
		results:  make(map[string]HealthCheckResult),
	}
}

// attach makes source the set of hosts that later rounds check.
func (m *HealthMonitor) attach(source hostSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.source = source
}

// Start launches the check loop in a goroutine. The first round runs at
// once. Calling Start while the loop runs does nothing; calling it after
// Stop starts a new loop.
func (m *HealthMonitor) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()

	if m.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.cancel, m.done = cancel, done
	go m.loop(ctx, done)
}

// Stop cancels the check loop and returns after its goroutine has ended.
// A round in progress is abandoned between two hosts. Stop is safe to
// call before Start, and more than once; every call waits for the loop.
func (m *HealthMonitor) Stop() {
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
		m.cancel = nil
	}
	done := m.done
	m.mu.Unlock()

	if done != nil {
		<-done
	}
}

// loop runs a round, then waits for the next tick or cancellation.
func (m *HealthMonitor) loop(ctx context.Context, done chan struct{}) {
	defer close(done)

	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	for {
		// A round abandoned because ctx ended has nothing to report, and
		// the select below then returns.
		_ = m.RunOnce(ctx)

		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RunOnce checks every host registered in the attached manager now and
// stores the results. It returns ctx.Err() when ctx ends before the round
// completes; results stored before that point are kept. Rounds from Start
// and from RunOnce may overlap.
func (m *HealthMonitor) RunOnce(ctx context.Context) error {
	m.mu.Lock()
	source := m.source
	m.mu.Unlock()
	if source == nil {
		return nil
	}

	checked := make(map[string]struct{})
	for _, h := range source.snapshotHosts() {
		if err := ctx.Err(); err != nil {
			return err
		}
		result := m.checker.Check(ctx, h)
		// A check cut short by Stop carries no information about the
		// host, so it must not replace a real result.
		if err := ctx.Err(); err != nil {
			return err
		}

		result = normalizeResult(result, h.ID)
		m.store(result)
		source.recordHealth(result)
		checked[h.ID] = struct{}{}
	}

	m.pruneExcept(checked)
	return nil
}

// store records result as the latest for its host.
func (m *HealthMonitor) store(result HealthCheckResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.results[result.HostID] = result
}

// pruneExcept drops results of hosts that a completed round did not
// check, because they are no longer registered.
func (m *HealthMonitor) pruneExcept(checked map[string]struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.results {
		if _, ok := checked[id]; !ok {
			delete(m.results, id)
		}
	}
}

// forget drops the stored result for hostID.
func (m *HealthMonitor) forget(hostID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.results, hostID)
}

// Result returns the latest result the monitor stored for hostID, and
// false when it has none.
func (m *HealthMonitor) Result(hostID string) (HealthCheckResult, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.results[hostID]
	return r, ok
}

// Interval returns the interval between rounds that the monitor was
// created with.
func (m *HealthMonitor) Interval() time.Duration {
	return m.interval
}
