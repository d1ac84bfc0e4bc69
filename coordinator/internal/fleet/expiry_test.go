package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// fastSweep sets a sweep interval short enough for tests.
func fastSweep(c *Config) { c.SweepInterval = 20 * time.Millisecond }

// recordVersion returns the etcd version of an allocation record, which
// counts its writes.
func (e *env) recordVersion(t *testing.T, allocID string) int64 {
	t.Helper()
	resp, err := e.cli.Get(ctx(t), e.ks.Allocation(allocID))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	return resp.Kvs[0].Version
}

func TestPassedExpiresAtFollowsLiveLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f1 := e.startFleet(t, fastSweep)
	f2 := e.startFleet(t, fastSweep)
	e.registerHost(t, hostDoc("h1", 8, 32, 0))
	waitHealth(t, f1, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f1.Allocate(ctx(t), api.AllocationRequest{CPU: 1,
		TTLSeconds: 30, Owner: "alice"})
	require.NoError(t, err)
	noTTL, _, err := f1.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.NoError(t, err)

	// Move expires_at into the past while the lease stays alive, as an
	// etcd restart leaves the record of the last renewal.
	rec := e.readRecord(t, a.ID)
	passed := time.Now().UTC().Add(-10 * time.Second).Truncate(time.Second)
	rec.ExpiresAt = &passed
	e.put(t, e.ks.Allocation(a.ID), encode(t, rec))
	written := e.recordVersion(t, a.ID)

	var got *keyspace.Allocation
	require.Eventually(t, func() bool {
		got = e.readRecord(t, a.ID)
		return got.ExpiresAt.After(passed)
	}, 5*time.Second, 20*time.Millisecond, "expires_at stayed in the past")
	now := time.Now()
	assert.Equal(t, keyspace.StateActive, got.State)
	assert.WithinRange(t, *got.ExpiresAt, now.Add(25*time.Second),
		now.Add(32*time.Second), "expires_at follows the lease's TTL of 30 s")

	// Both coordinators sweep again; the record was rewritten once.
	for _, f := range []*Fleet{f1, f2} {
		target := f.sweeps.Load() + 3
		require.Eventually(t, func() bool { return f.sweeps.Load() >= target },
			5*time.Second, 5*time.Millisecond)
	}
	assert.Equal(t, written+1, e.recordVersion(t, a.ID))
	assertLogged(t, e.logs, 1,
		"allocation expires_at moved", "alloc_id="+a.ID, "owner=alice")
	for _, f := range []*Fleet{f1, f2} {
		view, err := f.GetAllocation(ctx(t), a.ID)
		require.NoError(t, err)
		require.NotNil(t, view.ExpiresAt)
		assert.True(t, view.ExpiresAt.Equal(*got.ExpiresAt))
	}
	assert.Equal(t, int64(1), e.recordVersion(t, noTTL.ID),
		"an allocation without a TTL is left alone")
}

func TestPassedExpiresAtWithGoneLeaseExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, fastSweep)
	e.registerHost(t, hostDoc("h1", 8, 32, 0))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1,
		TTLSeconds: 30})
	require.NoError(t, err)
	resp, err := e.cli.Get(ctx(t), e.ks.AllocationLease(a.ID))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	_, err = e.cli.Revoke(ctx(t), clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)

	got := waitState(t, f, a.ID, keyspace.StateExpired, 5*time.Second)
	require.NotNil(t, got.ExpiresAt)
	assert.True(t, got.ExpiresAt.Equal(*a.ExpiresAt), "expires_at unchanged")
	assert.Zero(t, countLines(e.logs.String(), "allocation expires_at moved"))
}

func TestExpiresAtAfterEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd, which takes several seconds")
	}
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, fastSweep)
	e.registerHost(t, hostDoc("h1", 8, 32, 0))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	const ttl = 6
	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1,
		TTLSeconds: ttl})
	require.NoError(t, err)

	// The restarted member renews the lease to its full TTL, past the
	// recorded expires_at, and the sweep moves expires_at along.
	e.cluster.Restart()
	var moved api.Allocation
	require.Eventually(t, func() bool {
		moved, err = f.GetAllocation(ctx(t), a.ID)
		return err == nil && moved.ExpiresAt.After(*a.ExpiresAt)
	}, 15*time.Second, 20*time.Millisecond, "expires_at never moved")
	assert.Equal(t, keyspace.StateActive, moved.State)
	assert.LessOrEqual(t, moved.ExpiresAt.Sub(*a.ExpiresAt),
		time.Duration(ttl+2)*time.Second, "outlived its TTL by more than one TTL")

	expired := waitState(t, f, a.ID, keyspace.StateExpired, 15*time.Second)
	require.NotNil(t, expired.ReleasedAt)
	assert.False(t, expired.ReleasedAt.Before(*a.ExpiresAt),
		"expired before its first expires_at")
	assert.Zero(t, checkInvariant(t, e))
}
