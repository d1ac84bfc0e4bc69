package heartbeat

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestRegisterWritesBothDocuments(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h1", nil)
	a.start(t)

	lease := waitRegistered(t, c.Client, "h1", a.InstanceID(), 5*time.Second)
	ttl, err := c.Client.TimeToLive(etcdtest.Ctx(t, 5*time.Second), lease)
	require.NoError(t, err)
	assert.Equal(t, int64(2), ttl.GrantedTTL)

	info := infoOf(t, c.Client, "h1")
	assert.Equal(t, a.InstanceID(), info.InstanceID)
	assert.Equal(t, "test", info.AgentVersion)
	assert.False(t, info.RegisteredAt.IsZero())
	assert.Nil(t, info.StoppedAt)

	infoKV, err := getKV(c.Client, testKeys.HostInfo("h1"))
	require.NoError(t, err)
	assert.Zero(t, infoKV.Lease, "info must outlive the lease")

	// The keepalive keeps the lease alive beyond its TTL.
	time.Sleep(testTTL + 500*time.Millisecond)
	st, l := statusOf(t, c.Client, "h1")
	require.NotNil(t, st)
	assert.Equal(t, lease, l)
}

func TestShutdownDeregisters(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-stop", nil)
	r := a.start(t)
	lease := waitRegistered(t, c.Client, "h-stop", a.InstanceID(), 5*time.Second)

	err, took := r.stop(t)
	require.NoError(t, err)
	assert.Less(t, took, StopTimeout+200*time.Millisecond)

	st, _ := statusOf(t, c.Client, "h-stop")
	assert.Nil(t, st, "status key must be deleted at once")
	info := infoOf(t, c.Client, "h-stop")
	require.NotNil(t, info.StoppedAt)
	assert.Equal(t, a.InstanceID(), info.InstanceID)
	assert.Equal(t, int64(-1), leaseRemaining(t, c.Client, lease), "lease revoked")
}

func TestShutdownWithEtcdDownIsQuick(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-down", nil)
	r := a.start(t)
	waitRegistered(t, c.Client, "h-down", a.InstanceID(), 5*time.Second)

	c.Stop()
	err, took := r.stop(t)
	require.NoError(t, err)
	assert.Less(t, took, StopTimeout+300*time.Millisecond)
}

func TestStatusWritesOnChangeAndMaxInterval(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-change", func(cfg *Config) {
		cfg.StatusMaxInterval = 700 * time.Millisecond
	})
	a.host.setCPU(10)
	a.start(t)
	waitRegistered(t, c.Client, "h-change", a.InstanceID(), 5*time.Second)
	require.Eventually(t, func() bool { return len(a.obs.writeReasons()) > 0 },
		2*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{WriteRegistered}, a.obs.writeReasons())

	// Below the threshold: no write for several samples.
	a.host.setCPU(12)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, []string{WriteRegistered}, a.obs.writeReasons())

	// Above the threshold: written at the next sample.
	a.host.setCPU(40)
	require.Eventually(t, func() bool {
		st, _, err := readStatus(c.Client, "h-change")
		return err == nil && st != nil && st.CPUPercent == 40
	}, 2*time.Second, 20*time.Millisecond)
	// The observer hears of the write after etcd has it, so wait for it.
	assert.Eventually(t, func() bool {
		return slices.Contains(a.obs.writeReasons(), WriteCPU)
	}, 2*time.Second, 10*time.Millisecond, "write reasons %v", a.obs.writeReasons())

	// Unchanged: written again once the maximum interval passed.
	require.Eventually(t, func() bool {
		return slices.Contains(a.obs.writeReasons(), WriteMaxInterval)
	}, 3*time.Second, 20*time.Millisecond)
}

func TestStatusKeyDeletedReregisters(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-del", func(cfg *Config) {
		cfg.StatusMaxInterval = 100 * time.Millisecond
	})
	a.start(t)
	lease := waitRegistered(t, c.Client, "h-del", a.InstanceID(), 5*time.Second)

	_, err := c.Client.Delete(etcdtest.Ctx(t, 5*time.Second),
		testKeys.HostStatus("h-del"))
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		return a.obs.registrations() >= 2
	}, 5*time.Second, 20*time.Millisecond)
	newLease := waitRegistered(t, c.Client, "h-del", a.InstanceID(), 5*time.Second)
	assert.NotEqual(t, lease, newLease)
	a.obs.mu.Lock()
	defer a.obs.mu.Unlock()
	require.NotEmpty(t, a.obs.lostErrs)
	assert.ErrorIs(t, a.obs.lostErrs[0], ErrStatusLost)
}

func TestLeaseRevokedReregisters(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-revoke", nil)
	a.start(t)
	lease := waitRegistered(t, c.Client, "h-revoke", a.InstanceID(), 5*time.Second)

	_, err := c.Client.Revoke(etcdtest.Ctx(t, 5*time.Second), lease)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		st, l, err := readStatus(c.Client, "h-revoke")
		return err == nil && st != nil && l != 0 && l != lease
	}, 2*testTTL+2*time.Second, 20*time.Millisecond)
	assert.Contains(t, a.logs.String(), "not registered; retrying")
}

func TestSecondAgentWithSameIDIsRejected(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	first := newTestAgent(t, c.Client, "h-dup", nil)
	first.start(t)
	lease := waitRegistered(t, c.Client, "h-dup", first.InstanceID(), 5*time.Second)

	second := newTestAgent(t, c.Client, "h-dup", nil)
	began := time.Now()
	err := second.start(t).wait(t, 3*testTTL+2*time.Second)

	require.ErrorIs(t, err, ErrHostIDInUse)
	var inUse *HostIDInUseError
	require.True(t, errors.As(err, &inUse))
	assert.Equal(t, first.InstanceID(), inUse.InstanceID)
	assert.Contains(t, err.Error(), `host ID "h-dup" is already registered`)
	assert.Contains(t, err.Error(), "give this agent another --host-id")
	assert.GreaterOrEqual(t, time.Since(began), testTTL,
		"must wait at least one TTL for a dead holder to expire")

	st, l := statusOf(t, c.Client, "h-dup")
	require.NotNil(t, st)
	assert.Equal(t, first.InstanceID(), st.InstanceID)
	assert.Equal(t, lease, l)
	assert.Equal(t, first.InstanceID(), infoOf(t, c.Client, "h-dup").InstanceID)
}

// putForeignStatus writes a status under a new lease, as another agent
// instance would, and returns the lease.
func putForeignStatus(t *testing.T, cli *clientv3.Client, hostID,
	instance string, ttl int64) clientv3.LeaseID {
	t.Helper()
	ctx := etcdtest.Ctx(t, 5*time.Second)
	grant, err := cli.Grant(ctx, ttl)
	require.NoError(t, err)
	val, err := keyspace.Encode(keyspace.HostStatus{
		InstanceID: instance, GPUs: []keyspace.GPUStatus{},
	})
	require.NoError(t, err)
	_, err = cli.Put(ctx, testKeys.HostStatus(hostID), val,
		clientv3.WithLease(grant.ID))
	require.NoError(t, err)
	return grant.ID
}

func TestWaitsForDeadHolderToExpire(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	// A killed agent: its lease is not kept alive and expires within 2 s.
	putForeignStatus(t, c.Client, "h-dead", "killed-instance", 2)

	a := newTestAgent(t, c.Client, "h-dead", nil)
	began := time.Now()
	r := a.start(t)
	waitRegistered(t, c.Client, "h-dead", a.InstanceID(), 3*testTTL)
	assert.Greater(t, time.Since(began), time.Second, "registered before the old lease expired")
	assert.False(t, r.exited())
	assert.Contains(t, a.logs.String(), "waiting for its lease to expire")
	assert.Contains(t, a.logs.String(), "killed-instance")
}

func TestStaleAgentNeverOverwritesNewHolder(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-stale", func(cfg *Config) {
		cfg.StatusMaxInterval = 100 * time.Millisecond
	})
	r := a.start(t)
	waitRegistered(t, c.Client, "h-stale", a.InstanceID(), 5*time.Second)

	// Another instance takes the key with a lease the test keeps alive.
	ctx := etcdtest.Ctx(t, 30*time.Second)
	other := putForeignStatus(t, c.Client, "h-stale", "newer-instance", 2)
	ka, err := c.Client.KeepAlive(ctx, other)
	require.NoError(t, err)
	go func() {
		for range ka {
		}
	}()

	err = r.wait(t, 3*testTTL+3*time.Second)
	require.ErrorIs(t, err, ErrHostIDInUse)
	st, l := statusOf(t, c.Client, "h-stale")
	require.NotNil(t, st)
	assert.Equal(t, "newer-instance", st.InstanceID)
	assert.Equal(t, other, l)
}

func TestOwnKeyUnderOldLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-own", nil)
	// What an earlier session of this process left behind after an etcd
	// outage: the status key under a lease that etcd still keeps.
	old := putForeignStatus(t, c.Client, "h-own", a.InstanceID(), 30)

	began := time.Now()
	a.start(t)
	require.Eventually(t, func() bool {
		return a.obs.registrations() == 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Less(t, time.Since(began), testTTL, "own key must not be waited for")
	st, lease := statusOf(t, c.Client, "h-own")
	require.NotNil(t, st)
	assert.NotEqual(t, old, lease)
	assert.Equal(t, int64(-1), leaseRemaining(t, c.Client, old), "old lease revoked")
}

func TestStatusWithoutLeaseIsOverwritten(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	_, err := c.Client.Put(etcdtest.Ctx(t, 5*time.Second),
		testKeys.HostStatus("h-nolease"), `{"instance_id":"by-hand","gpus":[]}`)
	require.NoError(t, err)

	a := newTestAgent(t, c.Client, "h-nolease", nil)
	a.start(t)
	waitRegistered(t, c.Client, "h-nolease", a.InstanceID(), 5*time.Second)
}

func TestEtcdUnreachableAtStartIsNotFatal(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	c.Stop()

	a := newTestAgent(t, c.Client, "h-late", nil)
	r := a.start(t)
	require.Eventually(t, func() bool {
		return strings.Contains(a.logs.String(), "not registered; retrying")
	}, 10*time.Second, 20*time.Millisecond)
	assert.False(t, r.exited())

	c.Restart()
	waitRegistered(t, c.Client, "h-late", a.InstanceID(), 10*time.Second)
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := Config{
		Client: &clientv3.Client{}, Keyspace: testKeys,
		Info:   keyspace.HostInfo{ID: "h"},
		Sample: (&host{}).sample,
		TTL:    testTTL, Interval: time.Second, StatusMaxInterval: time.Second,
	}
	_, err := New(good)
	require.NoError(t, err)

	bad := good
	bad.Info.ID = "a/b"
	_, err = New(bad)
	assert.ErrorContains(t, err, "host id")

	bad = good
	bad.StatusMaxInterval = time.Millisecond
	_, err = New(bad)
	assert.ErrorContains(t, err, "invalid timing")

	bad = good
	bad.Sample = nil
	_, err = New(bad)
	assert.ErrorContains(t, err, "Sample")
}
