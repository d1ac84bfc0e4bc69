package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
)

// Not parallel: the detection time is asserted, so the test runs before
// the parallel tests load the machine.
func TestHostHealthFollowsLease(t *testing.T) {
	e := newEnv(t)
	f := e.startFleet(t, nil)
	info := hostDoc("h1", 8, 32, 2)

	const ttl = 2
	granted := time.Now()
	e.register(t, info, statusDoc(info), ttl)
	h := waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	assert.Empty(t, h.HealthMessage)
	require.NotNil(t, h.LastHeartbeat)

	// The lease is not kept alive, so etcd deletes the status key.
	h = waitHealth(t, f, "h1", api.HealthUnhealthy, 10*time.Second)
	elapsed := time.Since(granted)
	assert.LessOrEqual(t, elapsed, (ttl+1)*time.Second,
		"expiry seen after %s", elapsed)
	assert.Contains(t, h.HealthMessage, "heartbeat lease expired")
	assert.Contains(t, h.HealthMessage, "last heartbeat seen at")
	assert.Contains(t, h.HealthMessage, "agent clock: 2023-11-14T22:15:00Z")
	assert.NotNil(t, h.LastHeartbeat, "last heartbeat kept after expiry")

	mirrored, err := f.Manager().GetHealthStatus("h1")
	require.NoError(t, err)
	assert.Equal(t, host.HealthUnhealthy, mirrored.Status)

	hh, err := f.HostHealth(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, api.HealthUnhealthy, hh.Health)
	assert.Equal(t, h.HealthMessage, hh.Message)

	// Re-registration makes the host healthy again.
	lease := e.register(t, info, statusDoc(info), 60)
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	// A deliberate stop writes stopped_at and deletes the status key in
	// one transaction.
	stopped := info
	stoppedAt := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	stopped.StoppedAt = &stoppedAt
	_, err = e.cli.Txn(ctx(t)).Then(
		clientv3.OpPut(e.ks.HostInfo("h1"), encode(t, stopped)),
		clientv3.OpDelete(e.ks.HostStatus("h1")),
	).Commit()
	require.NoError(t, err)
	_, err = e.cli.Revoke(ctx(t), lease)
	require.NoError(t, err)
	h = waitHealth(t, f, "h1", api.HealthStopped, 5*time.Second)
	assert.Contains(t, h.HealthMessage, "2030-05-06T07:08:09Z")

	info.StoppedAt = nil
	e.register(t, info, statusDoc(info), 60)
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	// healthy → unhealthy → healthy → stopped → healthy.
	assert.Equal(t, uint64(4), f.Stats().HealthChanges)
	assertLogged(t, e.logs, 1, "host health changed",
		"health=stopped")
	assertLogged(t, e.logs, 1, "host registered",
		"host_id=h1")
}

func TestHostHealthStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// Registered before the coordinator started, without a live status.
	silent := hostDoc("silent", 4, 8, 0)
	e.put(t, e.ks.HostInfo("silent"), encode(t, silent))

	// Healthy, with one GPU reported unhealthy.
	sick := hostDoc("sick", 4, 8, 2)
	st := statusDoc(sick)
	st.GPUs[1].Health = "unhealthy"
	st.GPUs[1].HealthReason = "XID 79: fell off the bus"
	e.register(t, sick, st, 600)

	f := e.startFleet(t, nil)
	h := waitHealth(t, f, "silent", api.HealthUnknown, 5*time.Second)
	assert.Contains(t, h.HealthMessage, "no status key seen")
	assert.Nil(t, h.LastHeartbeat)

	h = waitHealth(t, f, "sick", api.HealthHealthy, 5*time.Second)
	assert.Contains(t, h.HealthMessage, "1 of 2 GPUs unhealthy")
	assert.Contains(t, h.HealthMessage, "XID 79")
	require.Len(t, h.GPUs, 2)
	assert.Equal(t, "unhealthy", h.GPUs[1].Health)
	assert.Equal(t, "XID 79: fell off the bus", h.GPUs[1].HealthReason)
	assert.Equal(t, 12.5, h.CPUPercent)
	assert.Equal(t, 3*gib, h.MemoryInUse)

	// Health does not depend on how full the host is.
	for range 2 {
		_, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 2, Memory: 4 * gib})
		require.NoError(t, err)
	}
	h, err := f.GetHost(ctx(t), "sick")
	require.NoError(t, err)
	assert.Equal(t, 4, h.UsedCPU)
	assert.Equal(t, api.HealthHealthy, h.Health)

	// The HostManager's on-demand checker reads the same state.
	checker := healthChecker{f: f}
	assert.Equal(t, host.HealthHealthy, checker.Check(ctx(t), &host.HostInfo{ID: "sick"}).Status)
	assert.Equal(t, host.HealthUnknown, checker.Check(ctx(t), &host.HostInfo{ID: "silent"}).Status)
	assert.Equal(t, host.HealthUnknown, checker.Check(ctx(t), &host.HostInfo{ID: "nope"}).Status)
	assert.Equal(t, host.HealthUnknown, checker.Check(ctx(t), nil).Status)

	stats := f.Stats()
	assert.Equal(t, 1, stats.HostsByHealth[api.HealthHealthy])
	assert.Equal(t, 1, stats.HostsByHealth[api.HealthUnknown])
	assert.Equal(t, 2, stats.AllocationsByState["active"])
}
