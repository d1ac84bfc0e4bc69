package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestDrainAndUndrain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 2, GPU: 1})
	require.NoError(t, err)

	h, err := f.Drain(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, host.StatusDraining, h.Status)
	assert.Equal(t, 2, h.UsedCPU, "drain keeps allocations")
	mirrored, err := f.Manager().GetHost("h1")
	require.NoError(t, err)
	assert.Equal(t, host.StatusDraining, mirrored.Status)

	assertLogged(t, e.logs, 1, "host draining changed",
		"draining=true")

	// Draining twice changes nothing.
	h, err = f.Drain(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, host.StatusDraining, h.Status)

	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.ErrorIs(t, err, service.ErrNoCapacity)
	assert.Contains(t, err.Error(), "1 draining")

	got, err := f.GetAllocation(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateActive, got.State)

	h, err = f.Undrain(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, host.StatusActive, h.Status)
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.NoError(t, err)

	// The release of the first allocation works across the drain cycle.
	_, err = f.Release(ctx(t), a.ID)
	require.NoError(t, err)

	_, err = f.Drain(ctx(t), "nope")
	require.ErrorIs(t, err, service.ErrNotFound)
	_, err = f.Undrain(ctx(t), "nope")
	require.ErrorIs(t, err, service.ErrNotFound)
}

func TestRemoveHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	info := hostDoc("h1", 8, 32, 2)
	lease := e.register(t, info, statusDoc(info), 600)
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{GPU: 1})
	require.NoError(t, err)

	err = f.RemoveHost(ctx(t), "h1")
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "is alive")
	assert.Contains(t, err.Error(), "stop the agent")

	_, err = e.cli.Revoke(ctx(t), lease)
	require.NoError(t, err)
	waitHealth(t, f, "h1", api.HealthUnhealthy, 5*time.Second)

	err = f.RemoveHost(ctx(t), "h1")
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "has 1 allocations ("+a.ID+")")
	assert.Contains(t, err.Error(), "release them first")

	_, err = f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	require.NoError(t, f.RemoveHost(ctx(t), "h1"))

	_, err = f.GetHost(ctx(t), "h1")
	require.ErrorIs(t, err, service.ErrNotFound)
	_, err = f.Manager().GetHost("h1")
	require.ErrorIs(t, err, host.ErrHostNotFound)
	resp, err := e.cli.Get(ctx(t), e.ks.HostPrefix("h1"), clientv3.WithPrefix())
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs)

	// The released record outlives the host.
	got, err := f.GetAllocation(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateReleased, got.State)

	err = f.RemoveHost(ctx(t), "h1")
	require.ErrorIs(t, err, service.ErrNotFound)
}

func TestReleaseOnVanishedHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1, GPU: 1})
	require.NoError(t, err)

	// An operator deletes every key of the host with etcdctl.
	_, err = e.cli.Delete(ctx(t), e.ks.HostPrefix("h1"), clientv3.WithPrefix())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := f.GetHost(ctx(t), "h1")
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)

	list, err := f.ListAllocations(ctx(t), service.AllocationFilter{HostID: "h1"})
	require.NoError(t, err)
	require.Len(t, list, 1, "the allocation stays visible")
	assert.Equal(t, keyspace.StateActive, list[0].State)

	r, err := f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateReleased, r.State)
	assert.Contains(t, e.logs.String(), "host removed from the view")
}

func TestRenew(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := newFakeClock()
	f := e.startFleet(t, func(c *Config) {
		c.Clock = clock.Now
		c.DefaultAllocationTTL = time.Hour
	})
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.NoError(t, err)
	assert.Equal(t, int64(3600), a.TTLSeconds, "default TTL")
	require.NotNil(t, a.ExpiresAt)
	assert.Equal(t, clock.Now().Add(time.Hour), *a.ExpiresAt)

	clock.Advance(10 * time.Minute)
	r, err := f.Renew(ctx(t), a.ID)
	require.NoError(t, err)
	require.NotNil(t, r.ExpiresAt)
	assert.Equal(t, clock.Now().Add(time.Hour), *r.ExpiresAt)
	got, err := f.GetAllocation(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, r.ExpiresAt, got.ExpiresAt)

	short, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1, TTLSeconds: 30})
	require.NoError(t, err)
	assert.Equal(t, clock.Now().Add(30*time.Second), *short.ExpiresAt)

	_, err = f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	_, err = f.Renew(ctx(t), a.ID)
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "is released")

	_, err = f.Renew(ctx(t), "alloc-missing")
	require.ErrorIs(t, err, service.ErrNotFound)

	noTTL := e.startFleet(t, nil)
	b, _, err := noTTL.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.NoError(t, err)
	assert.Nil(t, b.ExpiresAt)
	_, err = noTTL.Renew(ctx(t), b.ID)
	require.ErrorIs(t, err, service.ErrInvalid)
	assert.Contains(t, err.Error(), "has no TTL")
	assert.Contains(t, err.Error(), "request a new one with ttl_seconds")
}

func TestReleasedRecordsExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, func(c *Config) { c.ReleasedRetention = 2 * time.Second })
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1, IdempotencyKey: "k1"})
	require.NoError(t, err)
	keep, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.NoError(t, err)
	_, err = f.Release(ctx(t), a.ID)
	require.NoError(t, err)

	// The lease lasts 1.5 × the retention, 3 s.
	require.Eventually(t, func() bool {
		_, err := f.GetAllocation(ctx(t), a.ID)
		return err != nil
	}, 10*time.Second, 50*time.Millisecond)
	_, err = f.GetAllocation(ctx(t), a.ID)
	require.ErrorIs(t, err, service.ErrNotFound)

	resp, err := e.cli.Get(ctx(t), e.ks.Idempotency("k1"))
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "the idempotency key expires with its record")

	got, err := f.GetAllocation(ctx(t), keep.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateActive, got.State, "active records stay")
}
