package fleet

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestNewFleetRebuildsView(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.startFleet(t, nil)
	for _, id := range []string{"h1", "h2", "h3"} {
		e.registerHost(t, hostDoc(id, 16, 64, 4))
		waitHealth(t, first, id, api.HealthHealthy, 5*time.Second)
	}
	var ids []string
	for i := range 5 {
		a, _, err := first.Allocate(ctx(t), api.AllocationRequest{
			CPU: 1 + i, Memory: gib, GPU: i % 3, Owner: "team-a"})
		require.NoError(t, err)
		ids = append(ids, a.ID)
	}
	_, err := first.Release(ctx(t), ids[0])
	require.NoError(t, err)
	_, err = first.Drain(ctx(t), "h2")
	require.NoError(t, err)

	second := e.startFleet(t, nil)
	require.Eventually(t, func() bool {
		return second.Stats().Revision >= first.Stats().Revision
	}, 5*time.Second, 10*time.Millisecond)

	want, err := first.ListHosts(ctx(t))
	require.NoError(t, err)
	got, err := second.ListHosts(ctx(t))
	require.NoError(t, err)
	// LastHeartbeat is when each coordinator saw the status key.
	for i := range want {
		want[i].LastHeartbeat = nil
	}
	for i := range got {
		got[i].LastHeartbeat = nil
	}
	assert.Equal(t, want, got)

	wantAllocs, err := first.ListAllocations(ctx(t), service.AllocationFilter{})
	require.NoError(t, err)
	gotAllocs, err := second.ListAllocations(ctx(t), service.AllocationFilter{})
	require.NoError(t, err)
	assert.Equal(t, wantAllocs, gotAllocs)
	assert.Len(t, gotAllocs, 5)
	assert.Equal(t, first.Manager().ListHosts(), second.Manager().ListHosts())
}

func TestCompactionDuringWatchLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	lease := e.register(t, hostDoc("h2", 8, 32, 2), statusDoc(hostDoc("h2", 8, 32, 2)), 600)

	obs := &recordingObserver{}
	cfg := e.config()
	cfg.Observer = obs
	f, err := New(cfg)
	require.NoError(t, err)

	// The first watch waits until the test has written and compacted.
	listed, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.beforeWatch = func(ctx context.Context) {
		once.Do(func() {
			close(listed)
			select {
			case <-resume:
			case <-ctx.Done():
			}
		})
	}
	runFleet(t, f)
	<-listed
	waitHealth(t, f, "h2", api.HealthHealthy, time.Second)

	// Changes the watch has not delivered: a new host, a drained host,
	// an expired lease and an allocation written by another coordinator.
	e.registerHost(t, hostDoc("h3", 4, 16, 1))
	e.put(t, e.ks.HostLedger("h1"), `{"allocations":`+
		`{"alloc-x":{"cpu":2,"gpus":["GPU-h1-0"]}},"draining":true}`)
	e.put(t, e.ks.Allocation("alloc-x"), encode(t, &keyspace.Allocation{
		ID: "alloc-x", HostID: "h1", CPU: 2, State: keyspace.StateActive,
		GPUs: []keyspace.AllocatedGPU{{Index: 0, UUID: "GPU-h1-0"}},
	}))
	_, err = e.cli.Revoke(ctx(t), lease)
	require.NoError(t, err)
	rev := e.put(t, "/rg/unrelated-marker", "x")
	_, err = e.cli.Compact(ctx(t), rev)
	require.NoError(t, err)
	close(resume)

	waitHealth(t, f, "h3", api.HealthHealthy, 5*time.Second)
	got, err := f.GetHost(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, host.StatusDraining, got.Status)
	assert.Equal(t, 2, got.UsedCPU)
	assert.Equal(t, "alloc-x", got.GPUs[0].AllocationID)
	h2 := waitHealth(t, f, "h2", api.HealthUnhealthy, time.Second)
	assert.Contains(t, h2.HealthMessage, "heartbeat lease expired")
	a, err := f.GetAllocation(ctx(t), "alloc-x")
	require.NoError(t, err)
	assert.Equal(t, "h1", a.HostID)

	assert.GreaterOrEqual(t, f.Stats().Relists, uint64(1))
	assert.Equal(t, uint64(1), obs.count("relist compacted"))
	logs := e.logs.String()
	assert.Contains(t, logs, "listing again")
	assert.Contains(t, logs, "revision compacted")
	assert.GreaterOrEqual(t, f.Stats().Revision, rev)
}

func TestInvalidKeysAreSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	garbage := map[string]string{
		e.ks.HostInfo("json"):            `{"id":`,
		e.ks.HostInfo("types"):           `{"id":"types","total_cpu":"many"}`,
		e.ks.HostInfo("negative"):        `{"id":"negative","total_cpu":-4}`,
		e.ks.HostInfo("mismatch"):        `{"id":"other","total_cpu":4}`,
		e.ks.HostStatus("orphan"):        encode(t, statusDoc(hostDoc("orphan", 1, 1, 0))),
		e.ks.HostInfo("good") + "/extra": "x",
		e.ks.HostsPrefix() + "shallow":   "x",
		e.ks.Prefix() + "/unknown/kind":  "x",
		e.ks.Allocation("alloc-bad"):     `[]`,
		e.ks.Idempotency("key-bad"):      "not/an/id",
	}
	// Half of the garbage is listed, half arrives through the watch.
	i := 0
	later := map[string]string{}
	orphan := e.ks.HostStatus("orphan")
	for k, v := range garbage {
		switch {
		case k == orphan:
			// A valid status under a live lease, but with no info key.
			e.putLeased(t, k, v)
		case i%2 == 0:
			e.put(t, k, v)
		default:
			later[k] = v
		}
		i++
	}
	e.registerHost(t, hostDoc("good", 8, 32, 2))

	// A host with a broken status and one with a broken ledger.
	e.register(t, hostDoc("badstatus", 8, 32, 2), statusDoc(hostDoc("badstatus", 8, 32, 2)), 600)
	e.put(t, e.ks.HostStatus("badstatus"), `{"gpus":[{"uuid":"g","health":"sick"}]}`)
	e.registerHost(t, hostDoc("badledger", 8, 32, 2))
	e.put(t, e.ks.HostLedger("badledger"), `{"allocations":{"a":{"cpu":-1}}}`)

	f := e.startFleet(t, nil)
	for k, v := range later {
		e.put(t, k, v)
	}
	marker := e.put(t, e.ks.Prefix()+"/marker", "x")
	require.Eventually(t, func() bool {
		return f.Stats().Revision >= marker
	}, 5*time.Second, 10*time.Millisecond)

	hosts, err := f.ListHosts(ctx(t))
	require.NoError(t, err)
	var ids []string
	for _, h := range hosts {
		ids = append(ids, h.ID)
	}
	assert.Equal(t, []string{"badledger", "badstatus", "good"}, ids)

	bs := hosts[1]
	assert.Equal(t, api.HealthUnhealthy, bs.Health)
	assert.Contains(t, bs.HealthMessage, "invalid document")
	bl := hosts[0]
	assert.Equal(t, api.HealthHealthy, bl.Health)
	assert.Contains(t, bl.HealthMessage, "takes no allocations")

	// Only the valid host takes allocations.
	for range 3 {
		a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
		require.NoError(t, err)
		assert.Equal(t, "good", a.HostID)
	}
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 6})
	require.ErrorIs(t, err, service.ErrNoCapacity)
	assert.Contains(t, err.Error(), "1 with an invalid ledger")

	// Each invalid key is logged once, also after another list.
	_, err = f.list(ctx(t))
	require.NoError(t, err)
	logs := e.logs.String()
	for key := range garbage {
		assert.Equal(t, 1, countLines(logs, "skipping invalid key",
			"key="+key+" "), "key %s", key)
	}
	for _, key := range []string{e.ks.HostStatus("badstatus"), e.ks.HostLedger("badledger")} {
		assert.Equal(t, 1, countLines(logs, "skipping invalid key",
			"key="+key+" "), "key %s", key)
	}
	assert.Equal(t, 0, countLines(logs, "skipping invalid key", "key="+e.ks.HostInfo("good")+" "))
	assert.True(t, strings.Contains(logs, "has no info key"))
}

func TestStatusWithoutLeaseIsUnhealthy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	info := hostDoc("nolease", 8, 32, 1)
	e.put(t, e.ks.HostInfo("nolease"), encode(t, info))
	e.put(t, e.ks.HostStatus("nolease"), encode(t, statusDoc(info)))

	h := waitHealth(t, f, "nolease", api.HealthUnhealthy, 5*time.Second)
	assert.Contains(t, h.HealthMessage, "no lease")
	_, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.ErrorIs(t, err, service.ErrNoCapacity)
}

func TestEtcdOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// A client that retries its connection quickly, so the test does not
	// wait on gRPC's default reconnect backoff after the restart.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.cluster.Endpoint},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond,
				Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, cli.Close()) })

	f := e.startFleet(t, func(c *Config) {
		c.Client = cli
		c.CallTimeout = 500 * time.Millisecond
	})
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	// Closing the member waits for the fleet's open watch stream, up to
	// etcd's request timeout (7 s with the default election timeout).
	e.cluster.Stop()
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.ErrorIs(t, err, service.ErrUnavailable)
	assert.Contains(t, err.Error(), `read host "h1"`)
	_, err = f.Release(ctx(t), "alloc-1")
	require.ErrorIs(t, err, service.ErrUnavailable)
	_, err = f.Drain(ctx(t), "h1")
	require.ErrorIs(t, err, service.ErrUnavailable)
	assert.Positive(t, f.Stats().EtcdErrors)

	// The view keeps serving reads.
	_, err = f.GetHost(ctx(t), "h1")
	require.NoError(t, err)

	e.cluster.Restart()
	require.Eventually(t, func() bool {
		_, _, err := f.Allocate(context.Background(), api.AllocationRequest{CPU: 1})
		return err == nil
	}, 20*time.Second, 100*time.Millisecond)

	// The watch resumes: a change made now reaches the view.
	e.registerHost(t, hostDoc("h2", 8, 32, 2))
	waitHealth(t, f, "h2", api.HealthHealthy, 10*time.Second)
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no client", func(c *Config) { c.Client = nil }, "Client is nil"},
		{"no keyspace", func(c *Config) { c.Keyspace = keyspace.Keyspace{} }, "Keyspace"},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts is -1"},
		{"negative busy", func(c *Config) { c.BusyGPUMemoryBytes = -1 }, "--busy-gpu-memory -1"},
		{"negative ttl", func(c *Config) { c.DefaultAllocationTTL = -time.Second },
			"invalid --default-allocation-ttl -1s: it is negative"},
		{"sub-second ttl", func(c *Config) { c.DefaultAllocationTTL = 500 * time.Millisecond },
			"invalid --default-allocation-ttl 500ms: TTLs are whole seconds"},
		{"ttl above maximum", func(c *Config) { c.DefaultAllocationTTL = 9000 * time.Hour },
			"invalid --default-allocation-ttl 9000h0m0s: more than the maximum of 8760h0m0s"},
		{"ttl one second above maximum", func(c *Config) {
			c.DefaultAllocationTTL = 365*24*time.Hour + time.Second
		}, "maximum of 8760h0m0s"},
		{"short retention", func(c *Config) { c.ReleasedRetention = time.Second }, "at least 2s"},
		{"negative timeout", func(c *Config) { c.CallTimeout = -1 }, "CallTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config()
			tt.modify(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	maxTTL := e.config()
	maxTTL.DefaultAllocationTTL = 365 * 24 * time.Hour
	_, err := New(maxTTL)
	require.NoError(t, err, "a default TTL of exactly one year")

	f, err := New(e.config())
	require.NoError(t, err)
	assert.False(t, f.Ready())
	_, err = f.ListHosts(ctx(t))
	require.ErrorIs(t, err, service.ErrUnavailable)
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.ErrorIs(t, err, service.ErrUnavailable)
}

func TestWatchSkipsReplayedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 2))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	a, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 3, GPU: 1})
	require.NoError(t, err)

	// Replay every event since the start, with the view's revision
	// lowered so that only the per-key revisions guard against counting
	// anything twice.
	resp, err := e.cli.Get(ctx(t), e.ks.Root(), clientv3.WithPrefix())
	require.NoError(t, err)
	f.mu.Lock()
	f.view.rev = 0
	f.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	wch := e.cli.Watch(wctx, e.ks.Root(), clientv3.WithPrefix(),
		clientv3.WithRev(1), clientv3.WithPrevKV())
	for w := range wch {
		require.NoError(t, w.Err())
		f.applyEvents(w.Events)
		if n := len(w.Events); n > 0 && w.Events[n-1].Kv.ModRevision >= resp.Header.Revision {
			break
		}
	}
	cancel()

	h, err := f.GetHost(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, 3, h.UsedCPU)
	assert.Equal(t, 1, h.UsedGPU)
	assert.Equal(t, a.ID, h.GPUs[0].AllocationID)
	assert.Equal(t, api.HealthHealthy, h.Health)
}
