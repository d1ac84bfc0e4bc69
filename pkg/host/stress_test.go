package host

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// assertWithinBounds checks 0 <= used <= total for every resource of h.
func assertWithinBounds(t *testing.T, h *HostInfo) bool {
	used, total := h.used(), h.total()
	ok := true
	for _, r := range allResources {
		u, tot := used.amount(r), total.amount(r)
		ok = assert.GreaterOrEqual(t, u, int64(0),
			"host %s %s used", h.ID, r.field()) && ok
		ok = assert.LessOrEqual(t, u, tot,
			"host %s %s used above total", h.ID, r.field()) && ok
	}
	return ok
}

// assertChurnReleaseError accepts a failed release only on a churn host:
// it may have been unregistered, or replaced by UpsertHost, which resets
// its usage, between the reservation and the release.
func assertChurnReleaseError(t *testing.T, hostID string, err error) {
	if err == nil {
		return
	}
	assert.True(t, strings.HasPrefix(hostID, "churn-"),
		"release on stable host %s failed: %v", hostID, err)
	assert.True(t, errors.Is(err, ErrHostNotFound) ||
		errors.Is(err, ErrReleaseExceedsUsage), "unexpected %v", err)
}

func TestManagerConcurrentStress(t *testing.T) {
	for _, s := range allSelectors() {
		t.Run(s.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			runStress(t, s.make())
		})
	}
}

// runStress registers, selects, allocates, releases and unregisters from
// many goroutines at once while observers check every host they see.
func runStress(t *testing.T, selector HostSelector) {
	const (
		stableHosts = 8
		workers     = 6
		iterations  = 300
	)

	monitor := NewHealthMonitor(NewSimpleHealthChecker(time.Second), tinyInterval)
	m := NewHostManager(selector, monitor)
	for i := range stableHosts {
		h := idleHost(fmt.Sprintf("stable-%d", i), res(16, 64, 4))
		require.NoError(t, m.RegisterHost(h))
	}
	monitor.Start()
	defer monitor.Stop()

	var wg sync.WaitGroup
	var stop atomic.Bool
	var allocations atomic.Int64

	// Allocate then release, the race-free path.
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range iterations {
				req := res(rng.IntN(5), int64(rng.IntN(17)), rng.IntN(3))
				h, err := m.Allocate(req)
				if err != nil {
					assert.ErrorIs(t, err, ErrNoHostAvailable)
					continue
				}
				allocations.Add(1)
				assertWithinBounds(t, h)
				assertChurnReleaseError(t, h.ID, m.Release(h.ID, req))
			}
		})
	}

	// Select, then reserve in a second step, which may lose the race.
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range iterations {
				req := res(rng.IntN(5), int64(rng.IntN(17)), rng.IntN(3))
				h, err := m.SelectHost(req)
				if err != nil {
					assert.ErrorIs(t, err, ErrNoHostAvailable)
					continue
				}
				err = m.UpdateHostResources(h.ID, req.CPU, req.Memory, req.GPU, true)
				if err != nil {
					assert.True(t, errors.Is(err, ErrInsufficientResources) ||
						errors.Is(err, ErrHostNotFound), "unexpected %v", err)
					continue
				}
				err = m.UpdateHostResources(h.ID, req.CPU, req.Memory, req.GPU, false)
				assertChurnReleaseError(t, h.ID, err)
			}
		})
	}

	// Churn: hosts join, take part, and leave.
	for w := range workers {
		wg.Go(func() {
			for i := range iterations / 3 {
				id := fmt.Sprintf("churn-%d-%d", w, i)
				h := newHost(id, res(8, 32, 2), res(i%8, 0, 0))
				if !assert.NoError(t, m.RegisterHost(h)) {
					return
				}
				_, _ = m.GetHealthStatus(id)
				if i%2 == 0 {
					h.Status = StatusDraining
					assert.NoError(t, m.UpsertHost(h))
				}
				assert.NoError(t, m.UnregisterHost(id))
			}
		})
	}

	// Health flips on stable hosts.
	wg.Go(func() {
		statuses := []HealthStatus{HealthHealthy, HealthUnknown, HealthUnhealthy}
		for i := range iterations {
			err := m.SetHealth(HealthCheckResult{
				HostID:    fmt.Sprintf("stable-%d", i%stableHosts),
				Status:    statuses[i%len(statuses)],
				CheckedAt: time.Now(),
			})
			assert.NoError(t, err)
		}
	})

	// Observers check every host they can see until the workers finish.
	var observers sync.WaitGroup
	var observations atomic.Int64
	for range 2 {
		observers.Go(func() {
			for !stop.Load() {
				for _, h := range m.ListHosts() {
					observations.Add(1)
					if !assertWithinBounds(t, h) {
						return
					}
				}
				_, _ = m.RankHosts(res(1, 1, 1))
			}
		})
	}

	wg.Wait()
	stop.Store(true)
	observers.Wait()

	// Every reservation on a stable host was released again.
	for i := range stableHosts {
		h := mustGet(t, m, fmt.Sprintf("stable-%d", i))
		assert.Equal(t, ResourceRequirement{}, h.used(), "host %s", h.ID)
	}
	assert.Equal(t, stableHosts, m.Len(), "all churn hosts are gone")
	assert.Positive(t, allocations.Load())
	assert.Positive(t, observations.Load())
}
