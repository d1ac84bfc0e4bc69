package host

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// checkerFunc adapts a function to HealthChecker.
type checkerFunc func(ctx context.Context, host *HostInfo) HealthCheckResult

func (f checkerFunc) Check(ctx context.Context, host *HostInfo) HealthCheckResult {
	return f(ctx, host)
}

// tinyInterval keeps monitor loops fast without sleeping in tests.
const tinyInterval = time.Millisecond

// hasResult reports whether the monitor stored a result with status for
// hostID.
func hasResult(m *HealthMonitor, hostID string, status HealthStatus) bool {
	r, ok := m.Result(hostID)
	return ok && r.Status == status
}

func TestMonitorChecksHostsRegisteredAfterStart(t *testing.T) {
	defer goleak.VerifyNone(t)

	monitor := NewHealthMonitor(NewSimpleHealthChecker(time.Second), tinyInterval)
	manager := NewHostManager(nil, monitor)
	monitor.Start()
	defer monitor.Stop()

	require.NoError(t, manager.RegisterHost(idleHost("early", res(8, 8, 1))))
	require.Eventually(t, func() bool {
		return hasResult(monitor, "early", HealthHealthy)
	}, 5*time.Second, tinyInterval)

	// A host that is nearly full turns unhealthy at the next round.
	busy := newHost("late", res(100, 100, 100), res(99, 99, 99))
	require.NoError(t, manager.RegisterHost(busy))
	require.Eventually(t, func() bool {
		return hasResult(monitor, "late", HealthUnhealthy)
	}, 5*time.Second, tinyInterval)

	got, err := manager.GetHealthStatus("late")
	require.NoError(t, err)
	assert.Equal(t, HealthUnhealthy, got.Status)
}

func TestMonitorUnhealthyHostNotSelected(t *testing.T) {
	defer goleak.VerifyNone(t)

	monitor := NewHealthMonitor(NewSimpleHealthChecker(time.Second), tinyInterval)
	manager := NewHostManager(nil, monitor)
	busy := newHost("busy", res(100, 100, 100), res(97, 97, 97))
	require.NoError(t, manager.RegisterHost(busy))

	// Before any check the host's health is unknown, so it is eligible.
	_, err := manager.SelectHost(res(1, 1, 1))
	require.NoError(t, err)

	monitor.Start()
	defer monitor.Stop()
	require.Eventually(t, func() bool {
		_, err := manager.SelectHost(res(1, 1, 1))
		return err != nil
	}, 5*time.Second, tinyInterval)

	_, err = manager.SelectHost(res(1, 1, 1))
	require.ErrorIs(t, err, ErrNoHostAvailable)
	assert.Contains(t, err.Error(), "(0 not active, 1 unhealthy)")
}

func TestMonitorStartStop(t *testing.T) {
	tests := []struct {
		name string
		run  func(m *HealthMonitor)
	}{
		{"stop before start", func(m *HealthMonitor) {
			m.Stop()
		}},
		{"stop twice", func(m *HealthMonitor) {
			m.Start()
			m.Stop()
			m.Stop()
		}},
		{"start twice", func(m *HealthMonitor) {
			m.Start()
			m.Start()
			m.Stop()
		}},
		{"restart after stop", func(m *HealthMonitor) {
			m.Start()
			m.Stop()
			m.Start()
			m.Stop()
		}},
		{"concurrent stops", func(m *HealthMonitor) {
			m.Start()
			done := make(chan struct{})
			go func() {
				m.Stop()
				close(done)
			}()
			m.Stop()
			<-done
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			m := NewHealthMonitor(nil, tinyInterval)
			NewHostManager(nil, m)
			tt.run(m)
		})
	}
}

func TestMonitorStopWaitsForLoop(t *testing.T) {
	defer goleak.VerifyNone(t)

	var inCheck, finished atomic.Bool
	checker := checkerFunc(func(ctx context.Context, h *HostInfo) HealthCheckResult {
		inCheck.Store(true)
		<-ctx.Done()
		// Work still running after cancellation must finish before Stop
		// returns.
		time.Sleep(20 * time.Millisecond)
		finished.Store(true)
		return HealthCheckResult{Status: HealthUnknown}
	})

	monitor := NewHealthMonitor(checker, tinyInterval)
	manager := NewHostManager(nil, monitor)
	require.NoError(t, manager.RegisterHost(idleHost("h1", res(1, 1, 1))))

	monitor.Start()
	require.Eventually(t, inCheck.Load, 5*time.Second, tinyInterval)
	monitor.Stop()

	assert.True(t, finished.Load(), "Stop returned before the check ended")
	_, ok := monitor.Result("h1")
	assert.False(t, ok, "a check cut short by Stop is not stored")
}

func TestMonitorRunOnce(t *testing.T) {
	monitor := NewHealthMonitor(newTestChecker(time.Second), time.Hour)
	manager := NewHostManager(nil, monitor)
	require.NoError(t, manager.RegisterHost(idleHost("a", res(1, 1, 1))))
	require.NoError(t, manager.RegisterHost(
		withStatus(idleHost("b", res(1, 1, 1)), StatusDraining)))

	require.NoError(t, monitor.RunOnce(context.Background()))

	a, ok := monitor.Result("a")
	require.True(t, ok)
	assert.Equal(t, HealthHealthy, a.Status)
	assert.Equal(t, fixedNow, a.CheckedAt)
	assert.True(t, hasResult(monitor, "b", HealthUnhealthy))

	stored, err := manager.GetHealthStatus("b")
	require.NoError(t, err)
	assert.Equal(t, HealthUnhealthy, stored.Status)
}

func TestMonitorRunOnceCancelled(t *testing.T) {
	monitor := NewHealthMonitor(newTestChecker(time.Second), time.Hour)
	manager := NewHostManager(nil, monitor)
	require.NoError(t, manager.RegisterHost(idleHost("a", res(1, 1, 1))))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := monitor.RunOnce(ctx)
	require.ErrorIs(t, err, context.Canceled)

	_, ok := monitor.Result("a")
	assert.False(t, ok)
}

func TestMonitorWithoutManager(t *testing.T) {
	monitor := NewHealthMonitor(nil, 0)
	assert.Equal(t, DefaultHealthCheckInterval, monitor.Interval())
	assert.NoError(t, monitor.RunOnce(context.Background()))
}

func TestMonitorDropsUnregisteredHosts(t *testing.T) {
	monitor := NewHealthMonitor(newTestChecker(time.Second), time.Hour)
	manager := NewHostManager(nil, monitor)
	require.NoError(t, manager.RegisterHost(idleHost("a", res(1, 1, 1))))
	require.NoError(t, manager.RegisterHost(idleHost("b", res(1, 1, 1))))
	require.NoError(t, monitor.RunOnce(context.Background()))

	require.NoError(t, manager.UnregisterHost("a"))
	_, ok := monitor.Result("a")
	assert.False(t, ok, "unregister drops the result")
	_, ok = monitor.Result("b")
	assert.True(t, ok)
}

func TestMonitorNormalizesCheckerResult(t *testing.T) {
	checker := checkerFunc(func(context.Context, *HostInfo) HealthCheckResult {
		return HealthCheckResult{Status: "degraded", Message: "disk slow"}
	})
	monitor := NewHealthMonitor(checker, time.Hour)
	manager := NewHostManager(nil, monitor)
	require.NoError(t, manager.RegisterHost(idleHost("a", res(1, 1, 1))))

	require.NoError(t, monitor.RunOnce(context.Background()))

	got, err := manager.GetHealthStatus("a")
	require.NoError(t, err)
	assert.Equal(t, "a", got.HostID)
	assert.Equal(t, HealthUnknown, got.Status)
	assert.Contains(t, got.Message, `invalid status "degraded": disk slow`)
	assert.False(t, got.CheckedAt.IsZero())
}
