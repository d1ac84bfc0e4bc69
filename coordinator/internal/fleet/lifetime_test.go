package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// waitState waits until the fleet's view shows the allocation in state
// want and returns it.
func waitState(
	t *testing.T, f *Fleet, allocID, want string, within time.Duration,
) api.Allocation {
	t.Helper()
	var a api.Allocation
	require.Eventually(t, func() bool {
		var err error
		a, err = f.GetAllocation(context.Background(), allocID)
		return err == nil && a.State == want
	}, within, 10*time.Millisecond, "allocation %q never became %s "+
		"(last: %s)", allocID, want, a.State)
	return a
}

// readRecord reads an allocation record straight from etcd.
func (e *env) readRecord(t *testing.T, allocID string) *keyspace.Allocation {
	t.Helper()
	key := e.ks.Allocation(allocID)
	resp, err := e.cli.Get(ctx(t), key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "record of %q", allocID)
	rec, err := keyspace.DecodeAllocation(key, resp.Kvs[0].Value)
	require.NoError(t, err)
	return rec
}

// leaseKeys counts the allocation lease keys in etcd.
func (e *env) leaseKeys(t *testing.T) int64 {
	t.Helper()
	resp, err := e.cli.Get(ctx(t), e.ks.AllocationLeasesPrefix(),
		clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	return resp.Count
}

// renewEvery renews allocID every interval until the test ends. The
// function it returns reports how many renewals failed so far.
func renewEvery(t *testing.T, f *Fleet, allocID string, interval time.Duration) func() int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			if _, err := f.Renew(ctx, allocID); err != nil && ctx.Err() == nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
}

func TestTTLExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	start := time.Now()
	idle, _, err := f.Allocate(ctx(t), api.AllocationRequest{
		CPU: 1, GPU: 1, TTLSeconds: 3, Owner: "alice"})
	require.NoError(t, err)
	renewed, _, err := f.Allocate(ctx(t), api.AllocationRequest{
		CPU: 1, GPU: 1, TTLSeconds: 3, Owner: "bob"})
	require.NoError(t, err)
	renewFailures := renewEvery(t, f, renewed.ID, time.Second)

	// The lease expires after 3 s; etcd's lessor (v3.7) looks for expired leases every 500 ms and
	// the expiry takes a few round trips on a loaded machine.
	got := waitState(t, f, idle.ID, keyspace.StateExpired, 6*time.Second)
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, 3*time.Second, "expired early")
	assert.Less(t, elapsed, 5*time.Second, "expired late")
	require.NotNil(t, got.ReleasedAt)
	assertLogged(t, e.logs, 1, "allocation expired",
		"alloc_id="+idle.ID, "owner=alice", "host_id=h1")

	// The renewed allocation outlives two TTLs.
	time.Sleep(time.Until(start.Add(6500 * time.Millisecond)))
	a, err := f.GetAllocation(ctx(t), renewed.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateActive, a.State)
	require.NotNil(t, a.ExpiresAt)
	assert.True(t, a.ExpiresAt.After(*renewed.ExpiresAt), "expires_at moved")
	assert.Zero(t, renewFailures())

	// The freed GPU goes to the next request.
	next, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1, GPU: 1})
	require.NoError(t, err)
	assert.Equal(t, idle.GPUs, next.GPUs)

	_, err = f.Renew(ctx(t), idle.ID)
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "expired at")
	assert.Contains(t, err.Error(), "request a new one")
	rel, err := f.Release(ctx(t), idle.ID)
	require.NoError(t, err)
	assert.True(t, rel.AlreadyReleased)
	assert.Equal(t, keyspace.StateExpired, rel.State)
	assert.Equal(t, 2, checkInvariant(t, e))
	assert.Equal(t, uint64(1), f.Stats().AllocationsExpired)
}

func TestReleaseDeletesLeaseKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 1))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{GPU: 1, TTLSeconds: 2})
	require.NoError(t, err)
	resp, err := e.cli.Get(ctx(t), e.ks.AllocationLease(a.ID))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	assert.Equal(t, a.ID, string(resp.Kvs[0].Value))

	_, err = f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Zero(t, e.leaseKeys(t))
	ttl, err := e.cli.TimeToLive(ctx(t), lease)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl.TTL, "lease revoked")

	// A sweep after the release finds nothing to expire.
	f.wakeSweep()
	start := f.sweeps.Load()
	require.Eventually(t, func() bool { return f.sweeps.Load() > start },
		5*time.Second, 5*time.Millisecond)
	assert.Equal(t, keyspace.StateReleased, e.readRecord(t, a.ID).State)
	assert.Zero(t, f.Stats().AllocationsExpired)
}

func TestRenewAfterLeaseExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 1))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{GPU: 1, TTLSeconds: 30})
	require.NoError(t, err)

	// Revoking the lease deletes the lease key as an expiry does. Renew
	// may win the race with the sweep; either way one expiry happens.
	resp, err := e.cli.Get(ctx(t), e.ks.AllocationLease(a.ID))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	_, err = e.cli.Revoke(ctx(t), clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)

	_, err = f.Renew(ctx(t), a.ID)
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "expired at")
	waitState(t, f, a.ID, keyspace.StateExpired, 5*time.Second)
	assertLogged(t, e.logs, 1, "allocation expired",
		"alloc_id="+a.ID)
	assert.Equal(t, uint64(1), f.Stats().AllocationsExpired)
}

// stoppableFleet runs a Fleet until stop is called or the test ends.
func stoppableFleet(t *testing.T, e *env, modify func(*Config)) (*Fleet, func()) {
	t.Helper()
	cfg := e.config()
	if modify != nil {
		modify(&cfg)
	}
	f, err := New(cfg)
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	require.Eventually(t, f.Ready, 10*time.Second, 10*time.Millisecond)
	return f, stop
}

// waitExpiries waits until the fleets together counted and logged n
// expiries. The committing goroutine counts and logs after the watch may
// already have shown the change to a test.
func waitExpiries(t *testing.T, e *env, n int, fleets ...*Fleet) {
	t.Helper()
	assert.Eventually(t, func() bool {
		var counted uint64
		for _, f := range fleets {
			counted += f.Stats().AllocationsExpired
		}
		return counted >= uint64(n) && len(expiryLogCounts(e.logs.String())) >= n
	}, 5*time.Second, 5*time.Millisecond)
}

// expiryLogCounts returns how often each allocation's expiry was logged.
func expiryLogCounts(log string) map[string]int {
	counts := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "allocation expired") {
			continue
		}
		for _, field := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(field, "alloc_id="); ok {
				counts[id]++
			}
		}
	}
	return counts
}

func TestExpiryExactlyOnceAcrossFleets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f1 := e.startFleet(t, nil)
	f2 := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 64, 256, 0))
	waitHealth(t, f1, "h1", api.HealthHealthy, 5*time.Second)
	waitHealth(t, f2, "h1", api.HealthHealthy, 5*time.Second)

	const n = 50
	ids := make([]string, 0, n)
	for i := range n {
		f := f1
		if i%2 == 1 {
			f = f2
		}
		a, _, err := f.Allocate(ctx(t), api.AllocationRequest{
			CPU: 1, TTLSeconds: 2, Owner: fmt.Sprintf("job-%d", i)})
		require.NoError(t, err)
		ids = append(ids, a.ID)
	}

	for _, f := range []*Fleet{f1, f2} {
		require.Eventually(t, func() bool {
			s := f.Stats()
			return s.AllocationsByState[keyspace.StateExpired] == n
		}, 15*time.Second, 20*time.Millisecond)
	}
	waitExpiries(t, e, n, f1, f2)
	assert.Equal(t, uint64(n),
		f1.Stats().AllocationsExpired+f2.Stats().AllocationsExpired)
	counts := expiryLogCounts(e.logs.String())
	assert.Len(t, counts, n)
	for _, id := range ids {
		assert.Equal(t, 1, counts[id], "expiry log lines of %q", id)
	}
	assert.Zero(t, checkInvariant(t, e))
	assert.Zero(t, e.leaseKeys(t))
}

func TestExpiryAcrossRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first, stopFirst := stoppableFleet(t, e, nil)
	e.registerHost(t, hostDoc("h1", 64, 256, 0))
	waitHealth(t, first, "h1", api.HealthHealthy, 5*time.Second)

	// Short allocations expire while the first coordinator runs, long
	// ones while no coordinator runs.
	var short, long []string
	for i := range 20 {
		ttl := int64(2)
		if i%2 == 1 {
			ttl = 6
		}
		a, _, err := first.Allocate(ctx(t), api.AllocationRequest{
			CPU: 1, TTLSeconds: ttl})
		require.NoError(t, err)
		if ttl == 2 {
			short = append(short, a.ID)
		} else {
			long = append(long, a.ID)
		}
	}
	for _, id := range short {
		waitState(t, first, id, keyspace.StateExpired, 10*time.Second)
	}
	stopFirst()

	// On a slow machine the first coordinator may have expired some long
	// allocations too; the rest are left to the second.
	var pending []string
	for _, id := range long {
		if e.readRecord(t, id).State == keyspace.StateActive {
			pending = append(pending, id)
		}
	}
	require.NotEmpty(t, pending, "every allocation expired before the "+
		"restart; raise the long TTL")
	require.Eventually(t, func() bool { return e.leaseKeys(t) == 0 },
		10*time.Second, 50*time.Millisecond)
	for _, id := range pending {
		assert.Equal(t, keyspace.StateActive, e.readRecord(t, id).State)
	}

	second := e.startFleet(t, nil)
	for _, id := range long {
		waitState(t, second, id, keyspace.StateExpired, 10*time.Second)
	}
	waitExpiries(t, e, len(short)+len(long), first, second)
	assert.Equal(t, uint64(len(pending)), second.Stats().AllocationsExpired)
	assert.Equal(t, uint64(len(short)+len(long)),
		first.Stats().AllocationsExpired+second.Stats().AllocationsExpired)
	counts := expiryLogCounts(e.logs.String())
	assert.Len(t, counts, len(short)+len(long))
	for id, c := range counts {
		assert.Equal(t, 1, c, "expiry log lines of %q", id)
	}
	assert.Zero(t, checkInvariant(t, e))
}

// lostEnv is a fleet on a fake clock with a fast sweep and one host
// whose status lives under a lease the test controls.
type lostEnv struct {
	*env
	f     *Fleet
	clock *fakeClock
	info  *keyspace.HostInfo
	lease clientv3.LeaseID
}

func newLostEnv(t *testing.T, releaseAfter time.Duration) *lostEnv {
	t.Helper()
	e := newEnv(t)
	clock := newFakeClock()
	f := e.startFleet(t, func(c *Config) {
		c.Clock = clock.Now
		c.LostGracePeriod = time.Minute
		c.LostReleaseAfter = releaseAfter
		c.SweepInterval = 20 * time.Millisecond
	})
	info := hostDoc("h1", 8, 32, 2)
	le := &lostEnv{env: e, f: f, clock: clock, info: info}
	le.lease = e.register(t, info, statusDoc(info), 60)
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	return le
}

// kill ends the host's lease, as a crashed agent's lease ends.
func (le *lostEnv) kill(t *testing.T) {
	t.Helper()
	_, err := le.cli.Revoke(ctx(t), le.lease)
	require.NoError(t, err)
	waitHealth(t, le.f, "h1", api.HealthUnhealthy, 5*time.Second)
}

// waitSweeps waits until the sweep ran n more times.
func (le *lostEnv) waitSweeps(t *testing.T, n uint64) {
	t.Helper()
	target := le.f.sweeps.Load() + n
	require.Eventually(t, func() bool { return le.f.sweeps.Load() >= target },
		5*time.Second, 5*time.Millisecond)
}

func TestLostAndRestored(t *testing.T) {
	t.Parallel()
	le := newLostEnv(t, 0)
	a, _, err := le.f.Allocate(ctx(t), api.AllocationRequest{CPU: 2, GPU: 1})
	require.NoError(t, err)

	le.kill(t)
	le.clock.Advance(59 * time.Second)
	le.waitSweeps(t, 3)
	assert.Equal(t, keyspace.StateActive, le.readRecord(t, a.ID).State,
		"lost before the grace period")

	le.clock.Advance(2 * time.Second)
	lost := waitState(t, le.f, a.ID, keyspace.StateLost, 5*time.Second)
	require.NotNil(t, lost.LostAt)
	assert.Equal(t, le.clock.Now(), *lost.LostAt)
	assertLogged(t, le.logs, 1, "allocation lost",
		"alloc_id="+a.ID, "host_id=h1")

	// A lost allocation keeps its resources, and no sweep releases it
	// without --lost-release-after.
	le.clock.Advance(24 * time.Hour)
	le.waitSweeps(t, 3)
	h, err := le.f.GetHost(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, 2, h.UsedCPU)
	assert.Equal(t, keyspace.StateLost, le.readRecord(t, a.ID).State)

	// The agent returns with a new lease.
	le.lease = le.register(t, le.info, statusDoc(le.info), 60)
	back := waitState(t, le.f, a.ID, keyspace.StateActive, 5*time.Second)
	assert.Nil(t, back.LostAt)
	assert.Equal(t, 1, checkInvariant(t, le.env))
	s := le.f.Stats()
	assert.Equal(t, uint64(1), s.AllocationsLost)
	assert.Equal(t, uint64(1), s.AllocationsRestored)
}

func TestLostOnStoppedHost(t *testing.T) {
	t.Parallel()
	le := newLostEnv(t, 0)
	a, _, err := le.f.Allocate(ctx(t), api.AllocationRequest{GPU: 1})
	require.NoError(t, err)

	// A deliberate stop: info with stopped_at and the status deleted in
	// one transaction.
	stopped := *le.info
	at := le.clock.Now()
	stopped.StoppedAt = &at
	_, err = le.cli.Txn(ctx(t)).Then(
		clientv3.OpPut(le.ks.HostInfo("h1"), encode(t, &stopped)),
		clientv3.OpDelete(le.ks.HostStatus("h1")),
	).Commit()
	require.NoError(t, err)
	waitHealth(t, le.f, "h1", api.HealthStopped, 5*time.Second)

	le.clock.Advance(time.Minute)
	waitState(t, le.f, a.ID, keyspace.StateLost, 5*time.Second)

	// An operator releases the lost allocation.
	rel, err := le.f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateReleased, rel.State)
	assert.False(t, rel.AlreadyReleased)
	assert.Zero(t, checkInvariant(t, le.env))
}

func TestLostReleasedAfterPeriod(t *testing.T) {
	t.Parallel()
	le := newLostEnv(t, 10*time.Minute)
	a, _, err := le.f.Allocate(ctx(t), api.AllocationRequest{GPU: 2})
	require.NoError(t, err)

	le.kill(t)
	le.clock.Advance(time.Minute)
	waitState(t, le.f, a.ID, keyspace.StateLost, 5*time.Second)

	le.clock.Advance(9 * time.Minute)
	le.waitSweeps(t, 3)
	assert.Equal(t, keyspace.StateLost, le.readRecord(t, a.ID).State,
		"released before --lost-release-after")

	le.clock.Advance(time.Minute)
	rel := waitState(t, le.f, a.ID, keyspace.StateReleased, 5*time.Second)
	require.NotNil(t, rel.ReleasedAt)
	assertLogged(t, le.logs, 1,
		"lost allocation released", "alloc_id="+a.ID, "host_id=h1")
	assert.Equal(t, uint64(1), le.f.Stats().LostReleased)

	// The host returns to an empty ledger.
	le.register(t, le.info, statusDoc(le.info), 60)
	waitHealth(t, le.f, "h1", api.HealthHealthy, 5*time.Second)
	assert.Zero(t, checkInvariant(t, le.env))
	b, _, err := le.f.Allocate(ctx(t), api.AllocationRequest{GPU: 2})
	require.NoError(t, err)
	assert.Equal(t, a.GPUs, b.GPUs)
}

func TestListAllocationsFilters(t *testing.T) {
	t.Parallel()
	le := newLostEnv(t, 0)
	f := le.f
	le.registerHost(t, hostDoc("h2", 8, 32, 2))
	waitHealth(t, f, "h2", api.HealthHealthy, 5*time.Second)

	lost, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 8,
		Owner: "alice"})
	require.NoError(t, err)
	require.Equal(t, "h1", lost.HostID)
	active, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1,
		Owner: "bob"})
	require.NoError(t, err)
	require.Equal(t, "h2", active.HostID)
	released, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1,
		Owner: "alice"})
	require.NoError(t, err)
	_, err = f.Release(ctx(t), released.ID)
	require.NoError(t, err)
	expired, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1,
		Owner: "bob", TTLSeconds: 2})
	require.NoError(t, err)

	le.kill(t)
	le.clock.Advance(time.Minute)
	waitState(t, f, lost.ID, keyspace.StateLost, 5*time.Second)
	waitState(t, f, expired.ID, keyspace.StateExpired, 6*time.Second)

	tests := []struct {
		name   string
		filter service.AllocationFilter
		want   []string
	}{
		{"all", service.AllocationFilter{},
			[]string{lost.ID, active.ID, released.ID, expired.ID}},
		{"active", service.AllocationFilter{State: keyspace.StateActive},
			[]string{active.ID}},
		{"lost", service.AllocationFilter{State: keyspace.StateLost},
			[]string{lost.ID}},
		{"expired", service.AllocationFilter{State: keyspace.StateExpired},
			[]string{expired.ID}},
		{"released", service.AllocationFilter{State: keyspace.StateReleased},
			[]string{released.ID}},
		{"host h1", service.AllocationFilter{HostID: "h1"},
			[]string{lost.ID}},
		{"owner bob", service.AllocationFilter{Owner: "bob"},
			[]string{active.ID, expired.ID}},
		{"owner and state", service.AllocationFilter{Owner: "alice",
			State: keyspace.StateReleased}, []string{released.ID}},
		{"no match", service.AllocationFilter{HostID: "h9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.ListAllocations(ctx(t), tt.filter)
			require.NoError(t, err)
			ids := make([]string, 0, len(got))
			for _, a := range got {
				ids = append(ids, a.ID)
			}
			assert.ElementsMatch(t, tt.want, ids)
		})
	}

	_, err = f.ListAllocations(ctx(t), service.AllocationFilter{State: "gone"})
	require.ErrorIs(t, err, service.ErrInvalid)
}

func TestLifetimeConfigErrors(t *testing.T) {
	ks, err := keyspace.New("/rg")
	require.NoError(t, err)
	base := Config{Client: &clientv3.Client{}, Keyspace: ks}

	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"negative grace", func(c *Config) { c.LostGracePeriod = -time.Second },
			"invalid --lost-grace-period -1s"},
		{"negative release", func(c *Config) { c.LostReleaseAfter = -time.Second },
			"invalid --lost-release-after -1s"},
		{"negative sweep", func(c *Config) { c.SweepInterval = -time.Second },
			"SweepInterval is -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.modify(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestDeriveSweepInterval(t *testing.T) {
	assert.Equal(t, 10*time.Second, deriveSweepInterval(time.Minute, 0))
	assert.Equal(t, 250*time.Millisecond, deriveSweepInterval(time.Second, 0))
	assert.Equal(t, minSweepInterval, deriveSweepInterval(time.Millisecond, 0))
	assert.Equal(t, 2*time.Second, deriveSweepInterval(time.Minute, 8*time.Second))
}

func TestExpiryAcrossEtcdRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd, which takes several seconds")
	}
	t.Parallel()
	e := newEnv(t)
	f1 := e.startFleet(t, nil)
	f2 := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 64, 256, 0))
	waitHealth(t, f1, "h1", api.HealthHealthy, 5*time.Second)

	const n = 10
	ids := make([]string, 0, n)
	for range n {
		a, _, err := f1.Allocate(ctx(t), api.AllocationRequest{
			CPU: 1, TTLSeconds: 2})
		require.NoError(t, err)
		ids = append(ids, a.ID)
	}

	// A restarted member elects itself leader again, and etcd's lessor
	// then renews every lease to its full TTL, so the allocations expire
	// after the restart.
	e.cluster.Restart()
	for _, id := range ids {
		waitState(t, f1, id, keyspace.StateExpired, 20*time.Second)
		waitState(t, f2, id, keyspace.StateExpired, 5*time.Second)
	}
	waitExpiries(t, e, n, f1, f2)
	assert.Equal(t, uint64(n),
		f1.Stats().AllocationsExpired+f2.Stats().AllocationsExpired)
	counts := expiryLogCounts(e.logs.String())
	assert.Len(t, counts, n)
	for _, id := range ids {
		assert.Equal(t, 1, counts[id], "expiry log lines of %q", id)
	}
	assert.Zero(t, checkInvariant(t, e))
}
