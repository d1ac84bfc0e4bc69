package host

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestManager returns a manager without a monitor holding hosts.
func newTestManager(t *testing.T, hosts ...*HostInfo) *HostManager {
	t.Helper()
	m := NewHostManager(nil, nil)
	for _, h := range hosts {
		require.NoError(t, m.RegisterHost(h))
	}
	return m
}

// mustGet returns the stored copy of hostID.
func mustGet(t *testing.T, m *HostManager, hostID string) *HostInfo {
	t.Helper()
	h, err := m.GetHost(hostID)
	require.NoError(t, err)
	return h
}

func TestRegisterHostRejectsInvalid(t *testing.T) {
	tests := []struct {
		name    string
		host    *HostInfo
		wantErr string
	}{
		{"nil host", nil, "host is nil"},
		{"empty id", idleHost("", res(1, 1, 1)), "id is empty"},
		{"negative total", idleHost("h1", ResourceRequirement{GPU: -1}),
			"total_gpu is -1"},
		{"negative used", newHost("h1", res(1, 1, 1), ResourceRequirement{CPU: -1}),
			"used_cpu is -1"},
		{"used above total", newHost("h1", res(1, 1, 1), res(2, 0, 0)),
			"used_cpu 2 exceeds total_cpu 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t)

			err := m.RegisterHost(tt.host)
			require.ErrorIs(t, err, ErrInvalidHost)
			assert.Contains(t, err.Error(), tt.wantErr)

			err = m.UpsertHost(tt.host)
			require.ErrorIs(t, err, ErrInvalidHost)
			assert.Equal(t, 0, m.Len())
		})
	}
}

func TestRegisterHostDuplicate(t *testing.T) {
	m := newTestManager(t, idleHost("h1", res(1, 1, 1)))

	err := m.RegisterHost(idleHost("h1", res(2, 2, 2)))
	require.ErrorIs(t, err, ErrHostExists)
	assert.Contains(t, err.Error(), `"h1"`)
	assert.Equal(t, 1, mustGet(t, m, "h1").TotalCPU, "original kept")
}

func TestUnknownHostID(t *testing.T) {
	m := newTestManager(t, idleHost("h1", res(4, 4, 1)))
	tests := []struct {
		name string
		call func() error
	}{
		{"get host", func() error {
			_, err := m.GetHost("missing")
			return err
		}},
		{"unregister", func() error { return m.UnregisterHost("missing") }},
		{"update resources", func() error {
			return m.UpdateHostResources("missing", 1, 0, 0, true)
		}},
		{"release", func() error {
			return m.Release("missing", res(1, 0, 0))
		}},
		{"get health", func() error {
			_, err := m.GetHealthStatus("missing")
			return err
		}},
		{"set health", func() error {
			return m.SetHealth(HealthCheckResult{
				HostID: "missing", Status: HealthHealthy,
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.ErrorIs(t, err, ErrHostNotFound)
			assert.Contains(t, err.Error(), `"missing"`)
		})
	}
}

func TestNegativeRequirementRejected(t *testing.T) {
	m := newTestManager(t, idleHost("h1", res(4, 4, 1)))
	tests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"select host", func() error {
			_, err := m.SelectHost(ResourceRequirement{CPU: -1})
			return err
		}, "cpu is -1"},
		{"rank hosts", func() error {
			_, err := m.RankHosts(ResourceRequirement{Memory: -2})
			return err
		}, "memory is -2"},
		{"allocate", func() error {
			_, err := m.Allocate(ResourceRequirement{GPU: -3})
			return err
		}, "gpu is -3"},
		{"release", func() error {
			return m.Release("h1", ResourceRequirement{CPU: -4})
		}, "cpu is -4"},
		{"update resources add", func() error {
			return m.UpdateHostResources("h1", 0, -5, 0, true)
		}, "memory is -5"},
		{"update resources free", func() error {
			return m.UpdateHostResources("h1", 0, 0, -6, false)
		}, "gpu is -6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.ErrorIs(t, err, ErrInvalidRequirement)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, 0, mustGet(t, m, "h1").UsedCPU)
		})
	}
}

func TestManagerReturnsCopies(t *testing.T) {
	input := idleHost("h1", res(8, 8, 2))
	input.Labels = map[string]string{"zone": "a"}
	m := newTestManager(t, input)

	// Changing the registered value afterwards has no effect.
	input.UsedCPU = 8
	input.Labels["zone"] = "changed"

	tests := []struct {
		name string
		get  func() *HostInfo
	}{
		{"get host", func() *HostInfo { return mustGet(t, m, "h1") }},
		{"list hosts", func() *HostInfo { return m.ListHosts()[0] }},
		{"select host", func() *HostInfo {
			h, err := m.SelectHost(ResourceRequirement{})
			require.NoError(t, err)
			return h
		}},
		{"rank hosts", func() *HostInfo {
			ranked, err := m.RankHosts(ResourceRequirement{})
			require.NoError(t, err)
			return ranked[0]
		}},
		{"allocate", func() *HostInfo {
			h, err := m.Allocate(ResourceRequirement{})
			require.NoError(t, err)
			return h
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.get()
			got.UsedCPU = 7
			got.Labels["zone"] = "b"
			got.Status = StatusDraining

			stored := mustGet(t, m, "h1")
			assert.Equal(t, 0, stored.UsedCPU)
			assert.Equal(t, "a", stored.Labels["zone"])
			assert.Equal(t, StatusActive, stored.Status)
		})
	}
}

func TestListHostsSortedByID(t *testing.T) {
	m := newTestManager(t,
		idleHost("c", res(1, 1, 1)),
		idleHost("a", res(1, 1, 1)),
		idleHost("b", res(1, 1, 1)),
	)
	assert.Equal(t, []string{"a", "b", "c"}, ids(m.ListHosts()))
	assert.Equal(t, 3, m.Len())

	require.NoError(t, m.UnregisterHost("b"))
	assert.Equal(t, []string{"a", "c"}, ids(m.ListHosts()))
	assert.Equal(t, 2, m.Len())
}

func TestUpdateHostResources(t *testing.T) {
	start := func() *HostInfo {
		return newHost("h1", res(32, 128, 4), res(8, 32, 1))
	}
	tests := []struct {
		name     string
		cpu      int
		memory   int64
		gpu      int
		add      bool
		wantUsed ResourceRequirement
		wantIs   error
		wantErr  string
	}{
		{name: "reserve", cpu: 4, memory: 16 * gib, gpu: 1, add: true,
			wantUsed: res(12, 48, 2)},
		{name: "reserve everything free", cpu: 24, memory: 96 * gib, gpu: 3,
			add: true, wantUsed: res(32, 128, 4)},
		{name: "free", cpu: 8, memory: 32 * gib, gpu: 1, add: false,
			wantUsed: res(0, 0, 0)},
		{name: "zero change", add: true, wantUsed: res(8, 32, 1)},
		{name: "reserve above total", gpu: 4, add: true,
			wantUsed: res(8, 32, 1), wantIs: ErrInsufficientResources,
			wantErr: `reserve on host "h1": requested 4 GPU, only 3 free`},
		{name: "reserve with one resource short changes nothing",
			cpu: 1, memory: 100 * gib, gpu: 1, add: true,
			wantUsed: res(8, 32, 1), wantIs: ErrInsufficientResources,
			wantErr: "requested 100 GiB memory, only 96 GiB free"},
		{name: "free below zero", cpu: 9, add: false,
			wantUsed: res(8, 32, 1), wantIs: ErrReleaseExceedsUsage,
			wantErr: `release on host "h1": releasing 9 CPU, only 8 in use`},
		{name: "free with one resource short changes nothing",
			cpu: 1, gpu: 2, add: false,
			wantUsed: res(8, 32, 1), wantIs: ErrReleaseExceedsUsage,
			wantErr: "releasing 2 GPU, only 1 in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t, start())

			err := m.UpdateHostResources("h1", tt.cpu, tt.memory, tt.gpu, tt.add)
			if tt.wantIs != nil {
				require.ErrorIs(t, err, tt.wantIs)
				assert.Contains(t, err.Error(), tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.wantUsed, mustGet(t, m, "h1").used())
		})
	}
}

func TestUpdateHostResourcesIgnoresStatus(t *testing.T) {
	h := withStatus(idleHost("h1", res(4, 4, 1)), StatusDraining)
	m := newTestManager(t, h)

	require.NoError(t, m.UpdateHostResources("h1", 1, gib, 1, true))
	assert.Equal(t, res(1, 1, 1), mustGet(t, m, "h1").used())
}

func TestAllocateAndRelease(t *testing.T) {
	m := newTestManager(t,
		newHost("a", res(8, 32, 2), res(0, 0, 0)),
		newHost("b", res(8, 32, 2), res(4, 16, 1)),
	)
	req := res(2, 8, 1)

	// Least used picks a, whose copy shows the reservation.
	got, err := m.Allocate(req)
	require.NoError(t, err)
	assert.Equal(t, "a", got.ID)
	assert.Equal(t, req, got.used())
	assert.Equal(t, req, mustGet(t, m, "a").used())

	// Three more GPUs are free in total; the fourth request fails.
	for range 2 {
		_, err = m.Allocate(req)
		require.NoError(t, err)
	}
	_, err = m.Allocate(req)
	require.ErrorIs(t, err, ErrNoHostAvailable)
	assert.Contains(t, err.Error(), "need 1 GPU, at most 0 free on any active host")

	require.NoError(t, m.Release("a", req))
	again, err := m.Allocate(req)
	require.NoError(t, err)
	assert.Equal(t, "a", again.ID)

	err = m.Release("b", res(8, 0, 0))
	require.ErrorIs(t, err, ErrReleaseExceedsUsage)
}

func TestSelectHostDoesNotReserve(t *testing.T) {
	m := newTestManager(t, idleHost("a", res(8, 32, 1)))

	for range 3 {
		got, err := m.SelectHost(res(8, 32, 1))
		require.NoError(t, err)
		assert.Equal(t, "a", got.ID)
	}
	assert.Equal(t, ResourceRequirement{}, mustGet(t, m, "a").used())
}

func TestEligibility(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		health  HealthStatus
		want    bool
		wantMsg string
	}{
		{name: "active never checked", status: StatusActive, want: true},
		{name: "active healthy", status: StatusActive, health: HealthHealthy,
			want: true},
		{name: "active unknown", status: StatusActive, health: HealthUnknown,
			want: true},
		{name: "active unhealthy", status: StatusActive, health: HealthUnhealthy,
			wantMsg: "none of 1 registered hosts is eligible " +
				"(0 not active, 1 unhealthy)"},
		{name: "draining healthy", status: StatusDraining, health: HealthHealthy,
			wantMsg: "(1 not active, 0 unhealthy)"},
		{name: "other status", status: "retired",
			wantMsg: "(1 not active, 0 unhealthy)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t,
				withStatus(idleHost("h1", res(4, 4, 1)), tt.status))
			if tt.health != "" {
				require.NoError(t, m.SetHealth(HealthCheckResult{
					HostID: "h1", Status: tt.health,
				}))
			}

			_, selectErr := m.SelectHost(res(1, 1, 1))
			ranked, rankErr := m.RankHosts(res(1, 1, 1))
			_, allocErr := m.Allocate(res(1, 1, 1))
			if tt.want {
				require.NoError(t, selectErr)
				require.NoError(t, allocErr)
				require.NoError(t, rankErr)
				assert.Equal(t, []string{"h1"}, ids(ranked))
				assert.Equal(t, res(1, 1, 1), mustGet(t, m, "h1").used())
				return
			}
			for _, err := range []error{selectErr, allocErr, rankErr} {
				require.ErrorIs(t, err, ErrNoHostAvailable)
				assert.Contains(t, err.Error(), tt.wantMsg)
			}
			assert.Equal(t, ResourceRequirement{}, mustGet(t, m, "h1").used())
		})
	}
}

func TestNoHostsRegistered(t *testing.T) {
	m := newTestManager(t)
	_, err := m.SelectHost(res(1, 1, 1))
	require.ErrorIs(t, err, ErrNoHostAvailable)
	assert.Equal(t, "select host for 1 CPU, 1 GiB memory, 1 GPU: "+
		"no host available: no hosts registered", err.Error())
}

func TestHealthRecoveryRestoresEligibility(t *testing.T) {
	m := newTestManager(t, idleHost("h1", res(4, 4, 1)))
	t0 := time.Now()

	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h1", Status: HealthUnhealthy, CheckedAt: t0,
	}))
	_, err := m.SelectHost(ResourceRequirement{})
	require.ErrorIs(t, err, ErrNoHostAvailable)

	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h1", Status: HealthHealthy, CheckedAt: t0.Add(time.Second),
	}))
	got, err := m.SelectHost(ResourceRequirement{})
	require.NoError(t, err)
	assert.Equal(t, "h1", got.ID)
}

func TestSetHealth(t *testing.T) {
	m := newTestManager(t, idleHost("h1", res(4, 4, 1)))
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h1", Status: HealthUnhealthy, Message: "lease expired",
		CheckedAt: t0,
	}))

	// An older result, for example from a slow check, is ignored.
	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h1", Status: HealthHealthy, CheckedAt: t0.Add(-time.Minute),
	}))
	got, err := m.GetHealthStatus("h1")
	require.NoError(t, err)
	assert.Equal(t, HealthUnhealthy, got.Status)
	assert.Equal(t, "lease expired", got.Message)

	// A zero CheckedAt means now.
	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h1", Status: HealthHealthy,
	}))
	got, err = m.GetHealthStatus("h1")
	require.NoError(t, err)
	assert.Equal(t, HealthHealthy, got.Status)
	assert.WithinDuration(t, time.Now(), got.CheckedAt, time.Minute)

	err = m.SetHealth(HealthCheckResult{HostID: "h1", Status: "fine"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid status "fine"`)
}

func TestGetHealthStatusOnDemand(t *testing.T) {
	t.Run("without monitor", func(t *testing.T) {
		m := newTestManager(t,
			idleHost("ok", res(4, 4, 1)),
			withStatus(idleHost("drain", res(4, 4, 1)), StatusDraining))

		got, err := m.GetHealthStatus("ok")
		require.NoError(t, err)
		assert.Equal(t, HealthHealthy, got.Status)
		assert.Equal(t, "ok", got.HostID)

		again, err := m.GetHealthStatus("ok")
		require.NoError(t, err)
		assert.Equal(t, got.CheckedAt, again.CheckedAt, "stored, not rerun")

		drain, err := m.GetHealthStatus("drain")
		require.NoError(t, err)
		assert.Equal(t, HealthUnhealthy, drain.Status)
	})

	t.Run("with monitor uses its checker", func(t *testing.T) {
		var calls atomic.Int32
		checker := checkerFunc(func(_ context.Context, h *HostInfo) HealthCheckResult {
			calls.Add(1)
			return HealthCheckResult{HostID: h.ID, Status: HealthUnhealthy,
				Message: "custom"}
		})
		m := NewHostManager(nil, NewHealthMonitor(checker, time.Hour))
		require.NoError(t, m.RegisterHost(idleHost("h1", res(4, 4, 1))))

		got, err := m.GetHealthStatus("h1")
		require.NoError(t, err)
		assert.Equal(t, HealthUnhealthy, got.Status)
		assert.Equal(t, "custom", got.Message)

		_, err = m.GetHealthStatus("h1")
		require.NoError(t, err)
		assert.Equal(t, int32(1), calls.Load())

		// The on-demand result counts for eligibility.
		_, err = m.SelectHost(ResourceRequirement{})
		require.ErrorIs(t, err, ErrNoHostAvailable)
	})

	t.Run("result is a copy", func(t *testing.T) {
		m := newTestManager(t, idleHost("h1", res(4, 4, 1)))
		got, err := m.GetHealthStatus("h1")
		require.NoError(t, err)
		got.Status = HealthUnhealthy

		again, err := m.GetHealthStatus("h1")
		require.NoError(t, err)
		assert.Equal(t, HealthHealthy, again.Status)
	})
}

func TestUpsertHost(t *testing.T) {
	m := newTestManager(t)

	require.NoError(t, m.UpsertHost(idleHost("h1", res(4, 4, 1))))
	assert.Equal(t, 1, m.Len())

	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h1", Status: HealthHealthy, Message: "kept",
	}))

	// Replacing changes the resources and keeps the health result.
	require.NoError(t, m.UpsertHost(newHost("h1", res(8, 8, 2), res(1, 1, 1))))
	got := mustGet(t, m, "h1")
	assert.Equal(t, 8, got.TotalCPU)
	assert.Equal(t, 1, got.UsedGPU)
	health, err := m.GetHealthStatus("h1")
	require.NoError(t, err)
	assert.Equal(t, "kept", health.Message)

	// Replacing with a draining host removes it from selection, and back.
	draining := withStatus(idleHost("h1", res(8, 8, 2)), StatusDraining)
	require.NoError(t, m.UpsertHost(draining))
	_, err = m.SelectHost(ResourceRequirement{})
	require.ErrorIs(t, err, ErrNoHostAvailable)

	require.NoError(t, m.UpsertHost(idleHost("h1", res(8, 8, 2))))
	sel, err := m.SelectHost(res(8, 8, 2))
	require.NoError(t, err)
	assert.Equal(t, "h1", sel.ID)
	assert.Equal(t, 1, m.Len())
}

func TestCandidatesFollowChanges(t *testing.T) {
	m := newTestManager(t)
	want := map[string]bool{}
	for i := range 20 {
		id := fmt.Sprintf("h%02d", i)
		require.NoError(t, m.RegisterHost(idleHost(id, res(4, 4, 1))))
		want[id] = true
	}

	// Remove hosts from the middle and the ends of the candidate slice in
	// several ways, then compare with what RankHosts returns.
	for _, id := range []string{"h00", "h07", "h19", "h10"} {
		require.NoError(t, m.UnregisterHost(id))
		delete(want, id)
	}
	require.NoError(t, m.SetHealth(HealthCheckResult{
		HostID: "h03", Status: HealthUnhealthy,
	}))
	delete(want, "h03")
	require.NoError(t, m.UpsertHost(
		withStatus(idleHost("h15", res(4, 4, 1)), StatusDraining)))
	delete(want, "h15")
	require.NoError(t, m.UpsertHost(idleHost("h19", res(4, 4, 1))))
	want["h19"] = true

	ranked, err := m.RankHosts(ResourceRequirement{})
	require.NoError(t, err)
	var wantIDs []string
	for id := range want {
		wantIDs = append(wantIDs, id)
	}
	assert.ElementsMatch(t, wantIDs, ids(ranked))
	assert.Equal(t, 17, m.Len())
}

// firstSelector implements only HostSelector, returning its first
// eligible host, to test managers with selectors that cannot rank.
type firstSelector struct{}

func (firstSelector) Select(hosts []*HostInfo, req ResourceRequirement) (*HostInfo, error) {
	for _, h := range hosts {
		if eligible(h, req) {
			return h, nil
		}
	}
	return nil, explainNoHost(hosts, req)
}

// rogueSelector returns a host it was not given.
type rogueSelector struct{}

func (rogueSelector) Select([]*HostInfo, ResourceRequirement) (*HostInfo, error) {
	return idleHost("ghost", res(64, 64, 8)), nil
}

func TestCustomSelectors(t *testing.T) {
	t.Run("selector without rank", func(t *testing.T) {
		m := NewHostManager(firstSelector{}, nil)
		require.NoError(t, m.RegisterHost(idleHost("a", res(4, 4, 1))))

		ranked, err := m.RankHosts(res(1, 1, 1))
		require.NoError(t, err)
		assert.Equal(t, []string{"a"}, ids(ranked))

		// The selector hands back a stored pointer; the manager copies.
		got, err := m.SelectHost(res(1, 1, 1))
		require.NoError(t, err)
		got.UsedCPU = 4
		assert.Equal(t, 0, mustGet(t, m, "a").UsedCPU)
	})

	t.Run("selector returning unknown host", func(t *testing.T) {
		m := NewHostManager(rogueSelector{}, nil)
		require.NoError(t, m.RegisterHost(idleHost("a", res(4, 4, 1))))

		_, err := m.Allocate(res(1, 1, 1))
		require.Error(t, err)
		assert.Contains(t, err.Error(), `selector returned host "ghost"`)
		assert.Equal(t, 0, mustGet(t, m, "a").UsedCPU)
	})
}

func TestManagerSelectorStrategies(t *testing.T) {
	hosts := func() []*HostInfo {
		return []*HostInfo{
			idleHost("small", res(8, 32, 1)),
			newHost("large", res(64, 256, 8), res(32, 128, 4)),
		}
	}
	tests := []struct {
		name     string
		selector HostSelector
		want     string
	}{
		{"least used", NewLeastUsedSelector(), "small"},
		{"most free", NewMostFreeSelector(), "large"},
		{"bin pack", NewBinPackSelector(), "large"},
		{"round robin", NewRoundRobinSelector(), "large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewHostManager(tt.selector, nil)
			for _, h := range hosts() {
				require.NoError(t, m.RegisterHost(h))
			}
			got, err := m.Allocate(res(1, 1, 1))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.ID)
		})
	}
}
