package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestAllocateAndRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := newFakeClock()
	f := e.startFleet(t, func(c *Config) { c.Clock = clock.Now })
	e.registerHost(t, hostDoc("h1", 16, 64, 4))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	a, created, err := f.Allocate(ctx(t), api.AllocationRequest{
		CPU: 4, Memory: 16 * gib, GPU: 2, Owner: "alice",
	})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Regexp(t, `^alloc-[0-9a-f]{16}$`, a.ID)
	assert.Equal(t, "h1", a.HostID)
	assert.Equal(t, "node-h1", a.HostName)
	assert.Equal(t, "10.0.0.1", a.HostAddress)
	assert.Equal(t, []api.AllocatedGPU{
		{Index: 0, UUID: "GPU-h1-0"}, {Index: 1, UUID: "GPU-h1-1"},
	}, a.GPUs)
	assert.Equal(t, "GPU-h1-0,GPU-h1-1", a.CUDAVisibleDevices)
	assert.Equal(t, keyspace.StateActive, a.State)
	assert.Equal(t, clock.Now(), a.CreatedAt)

	// The fleet reads its own write.
	got, err := f.GetAllocation(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, a, got)
	h, err := f.GetHost(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, 4, h.UsedCPU)
	assert.Equal(t, 16*gib, h.UsedMemory)
	assert.Equal(t, 2, h.UsedGPU)
	assert.Equal(t, a.ID, h.GPUs[0].AllocationID)
	assert.Empty(t, h.GPUs[2].AllocationID)

	list, err := f.ListAllocations(ctx(t), service.AllocationFilter{Owner: "alice"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	list, err = f.ListAllocations(ctx(t), service.AllocationFilter{Owner: "bob"})
	require.NoError(t, err)
	assert.Empty(t, list)

	// The next GPUs go to the next request, lowest index first.
	b, _, err := f.Allocate(ctx(t), api.AllocationRequest{GPU: 1})
	require.NoError(t, err)
	assert.Equal(t, "GPU-h1-2", b.CUDAVisibleDevices)

	clock.Advance(time.Minute)
	r, err := f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateReleased, r.State)
	assert.False(t, r.AlreadyReleased)
	require.NotNil(t, r.ReleasedAt)
	assert.Equal(t, clock.Now(), *r.ReleasedAt)

	again, err := f.Release(ctx(t), a.ID)
	require.NoError(t, err)
	assert.True(t, again.AlreadyReleased)
	assert.Equal(t, keyspace.StateReleased, again.State)

	h, err = f.GetHost(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, 0, h.UsedCPU)
	assert.Equal(t, 1, h.UsedGPU)

	released, err := f.ListAllocations(ctx(t),
		service.AllocationFilter{State: keyspace.StateReleased})
	require.NoError(t, err)
	require.Len(t, released, 1)
	assert.Equal(t, a.ID, released[0].ID)

	_, err = f.Release(ctx(t), "alloc-0000000000000000")
	require.ErrorIs(t, err, service.ErrNotFound)
	assert.Contains(t, err.Error(), "alloc-0000000000000000")
	_, err = f.GetAllocation(ctx(t), "alloc-0000000000000000")
	require.ErrorIs(t, err, service.ErrNotFound)
	_, err = f.Release(ctx(t), "bad/id")
	require.ErrorIs(t, err, service.ErrInvalid)
	_, err = f.ListAllocations(ctx(t), service.AllocationFilter{State: "gone"})
	require.ErrorIs(t, err, service.ErrInvalid)
	assert.Contains(t, err.Error(), "active, lost, expired, released")
}

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)

	long := string(make([]byte, 300))
	tests := []struct {
		name string
		req  api.AllocationRequest
		want string
	}{
		{"negative cpu", api.AllocationRequest{CPU: -1}, "cpu is -1"},
		{"negative memory", api.AllocationRequest{Memory: -5}, "memory is -5"},
		{"negative gpu", api.AllocationRequest{GPU: -2}, "gpu is -2"},
		{"negative min gpu memory",
			api.AllocationRequest{GPU: 1, MinGPUMemory: -1}, "min_gpu_memory is -1"},
		{"negative ttl", api.AllocationRequest{CPU: 1, TTLSeconds: -3}, "ttl_seconds is -3"},
		{"huge ttl", api.AllocationRequest{CPU: 1, TTLSeconds: 1 << 40}, "maximum"},
		{"nothing requested", api.AllocationRequest{}, "all 0"},
		{"unknown strategy", api.AllocationRequest{CPU: 1, Strategy: "best"},
			`strategy "best" is unknown; use one of least_used, most_free`},
		{"model without gpu", api.AllocationRequest{CPU: 1, GPUModel: "A100"},
			`gpu_model is "A100" but gpu is 0`},
		{"gpu memory without gpu",
			api.AllocationRequest{CPU: 1, MinGPUMemory: gib}, "min_gpu_memory"},
		{"control character in model",
			api.AllocationRequest{GPU: 1, GPUModel: "A1\x0000"}, "control character"},
		{"long owner", api.AllocationRequest{CPU: 1, Owner: long}, "owner is 300 bytes"},
		{"bad idempotency key",
			api.AllocationRequest{CPU: 1, IdempotencyKey: "a/b"}, "idempotency_key"},
		{"empty label key",
			api.AllocationRequest{CPU: 1, Labels: map[string]string{"": "x"}}, "empty key"},
		{"control character in label",
			api.AllocationRequest{CPU: 1, Labels: map[string]string{"k": "\n"}}, `labels["k"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, created, err := f.Allocate(ctx(t), tt.req)
			require.ErrorIs(t, err, service.ErrInvalid)
			assert.False(t, created)
			assert.Contains(t, err.Error(), tt.want)

			_, err = f.Select(ctx(t), tt.req)
			require.ErrorIs(t, err, service.ErrInvalid)
		})
	}

	for _, id := range []string{"", "a/b", ".x"} {
		_, err := f.GetHost(ctx(t), id)
		require.ErrorIs(t, err, service.ErrInvalid, "host ID %q", id)
		_, err = f.Renew(ctx(t), id)
		require.ErrorIs(t, err, service.ErrInvalid, "allocation ID %q", id)
	}
}

func TestGPUEligibility(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, func(c *Config) { c.BusyGPUMemoryBytes = gib })

	// h1: GPU 0 unhealthy, GPU 1 busy with outside work, GPU 2 free.
	h1 := hostDoc("h1", 32, 128, 3)
	st := statusDoc(h1)
	st.GPUs[0].Health = keyspace.GPUUnhealthy
	st.GPUs[0].HealthReason = "XID 48"
	busy := 8 * gib
	st.GPUs[1].MemoryUsed = &busy
	e.register(t, h1, st, 600)

	// h2: two H100 GPUs of 80 GiB with labels.
	h2 := hostDoc("h2", 32, 128, 2)
	h2.Labels = map[string]string{"zone": "b", "tier": "gold"}
	for i := range h2.GPUs {
		h2.GPUs[i].Name = "NVIDIA H100 80GB HBM3"
		h2.GPUs[i].MemoryTotal = 80 * gib
	}
	e.registerHost(t, h2)
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	waitHealth(t, f, "h2", api.HealthHealthy, 5*time.Second)

	host1, err := f.GetHost(ctx(t), "h1")
	require.NoError(t, err)
	assert.False(t, host1.GPUs[0].Busy)
	assert.True(t, host1.GPUs[1].Busy)
	assert.False(t, host1.GPUs[2].Busy)

	t.Run("only the free healthy GPU of h1 is handed out", func(t *testing.T) {
		sel, err := f.Select(ctx(t), api.AllocationRequest{
			GPU: 1, GPUModel: "a100"})
		require.NoError(t, err)
		assert.Equal(t, "h1", sel.Host.ID)
		assert.Equal(t, []api.AllocatedGPU{{Index: 2, UUID: "GPU-h1-2"}}, sel.GPUs)

		_, err = f.Select(ctx(t), api.AllocationRequest{GPU: 2, GPUModel: "A100"})
		require.ErrorIs(t, err, service.ErrNoCapacity)
		assert.Contains(t, err.Error(), "no host can take 2 GPUs")
		assert.Contains(t, err.Error(), "most free GPUs on any host is 1")
		assert.Contains(t, err.Error(), `model matching "A100"`)
	})

	t.Run("min gpu memory picks h2", func(t *testing.T) {
		sel, err := f.Select(ctx(t), api.AllocationRequest{
			GPU: 2, MinGPUMemory: 60 * gib})
		require.NoError(t, err)
		assert.Equal(t, "h2", sel.Host.ID)
		assert.Len(t, sel.GPUs, 2)
	})

	t.Run("labels must all match", func(t *testing.T) {
		sel, err := f.Select(ctx(t), api.AllocationRequest{
			CPU: 1, Labels: map[string]string{"zone": "b"}})
		require.NoError(t, err)
		assert.Equal(t, "h2", sel.Host.ID)

		_, err = f.Select(ctx(t), api.AllocationRequest{
			CPU: 1, Labels: map[string]string{"zone": "b", "tier": "iron"}})
		require.ErrorIs(t, err, service.ErrNoCapacity)
		assert.Contains(t, err.Error(), "2 without labels tier=iron,zone=b")
	})

	t.Run("busy GPU returns once its memory use drops", func(t *testing.T) {
		idle := int64(0)
		st.GPUs[1].MemoryUsed = &idle
		e.register(t, h1, st, 600)
		require.Eventually(t, func() bool {
			sel, err := f.Select(ctx(t), api.AllocationRequest{
				GPU: 2, GPUModel: "A100"})
			return err == nil && sel.Host.ID == "h1"
		}, 5*time.Second, 10*time.Millisecond)

		a, _, err := f.Allocate(ctx(t), api.AllocationRequest{GPU: 2, GPUModel: "A100"})
		require.NoError(t, err)
		assert.Equal(t, "GPU-h1-1,GPU-h1-2", a.CUDAVisibleDevices)
	})
}

func TestNoCapacityExplains(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	for _, id := range []string{"h1", "h2", "h3"} {
		e.registerHost(t, hostDoc(id, 8, 32, 2))
		waitHealth(t, f, id, api.HealthHealthy, 5*time.Second)
	}

	_, _, err := f.Allocate(ctx(t), api.AllocationRequest{GPU: 4})
	require.ErrorIs(t, err, service.ErrNoCapacity)
	assert.Contains(t, err.Error(), "no host can take 4 GPUs: 3 hosts registered, "+
		"3 healthy; most free GPUs on any host is 2")

	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 9, Memory: 64 * gib})
	require.ErrorIs(t, err, service.ErrNoCapacity)
	assert.Contains(t, err.Error(), "most free CPU on any host is 8")
	assert.Contains(t, err.Error(), "most free memory on any host is 32 GiB")

	_, err = f.Drain(ctx(t), "h1")
	require.NoError(t, err)
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{GPU: 3})
	require.ErrorIs(t, err, service.ErrNoCapacity)
	assert.Contains(t, err.Error(), "1 draining")

	// A ledger at its maximum size takes no more entries.
	full := &keyspace.Ledger{Allocations: map[string]keyspace.LedgerEntry{}}
	for i := range keyspace.MaxLedgerEntries {
		full.Allocations[fmt.Sprintf("alloc-%d", i)] = keyspace.LedgerEntry{}
	}
	rev := e.put(t, e.ks.HostLedger("h2"), encode(t, full))
	require.Eventually(t, func() bool { return f.Stats().Revision >= rev },
		5*time.Second, 10*time.Millisecond)
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.NoError(t, err, "h3 still has room")
	_, err = f.Drain(ctx(t), "h3")
	require.NoError(t, err)
	_, _, err = f.Allocate(ctx(t), api.AllocationRequest{CPU: 1})
	require.ErrorIs(t, err, service.ErrNoCapacity)
	assert.Contains(t, err.Error(), "1 at the maximum of 1024 allocations")
}

func TestStrategies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("big", 64, 256, 8))
	e.registerHost(t, hostDoc("small", 8, 32, 2))
	waitHealth(t, f, "big", api.HealthHealthy, 5*time.Second)
	waitHealth(t, f, "small", api.HealthHealthy, 5*time.Second)

	// Half-fill "big" so that least_used and most_free disagree.
	_, _, err := f.Allocate(ctx(t), api.AllocationRequest{
		CPU: 32, Memory: 128 * gib, GPU: 4, Strategy: api.StrategyBinPack})
	require.NoError(t, err)

	pick := func(strategy string) string {
		sel, err := f.Select(ctx(t), api.AllocationRequest{CPU: 1, Strategy: strategy})
		require.NoError(t, err)
		return sel.Host.ID
	}
	assert.Equal(t, "small", pick(api.StrategyLeastUsed))
	assert.Equal(t, "small", pick(""))
	assert.Equal(t, "big", pick(api.StrategyMostFree))
	assert.Equal(t, "big", pick(api.StrategyBinPack))

	first, second := pick(api.StrategyRoundRobin), pick(api.StrategyRoundRobin)
	assert.NotEqual(t, first, second)

	seen := map[string]bool{}
	for range 40 {
		seen[pick(api.StrategyRandom)] = true
	}
	assert.Len(t, seen, 2)
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f1 := e.startFleet(t, nil)
	f2 := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 64, 256, 8))
	e.registerHost(t, hostDoc("h2", 64, 256, 8))
	for _, f := range []*Fleet{f1, f2} {
		waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
		waitHealth(t, f, "h2", api.HealthHealthy, 5*time.Second)
	}

	req := api.AllocationRequest{CPU: 2, GPU: 1, IdempotencyKey: "job-1"}
	a, created, err := f1.Allocate(ctx(t), req)
	require.NoError(t, err)
	require.True(t, created)
	b, created, err := f2.Allocate(ctx(t), req)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, a.ID, b.ID)
	assert.Equal(t, "job-1", b.IdempotencyKey)

	other := req
	other.CPU = 3
	_, _, err = f1.Allocate(ctx(t), other)
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "use a new key")

	stranger := req
	stranger.Owner = "bob"
	_, _, err = f2.Allocate(ctx(t), stranger)
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), `owner "", not "bob"`)

	// After a release the key keeps pointing to the released record.
	_, err = f1.Release(ctx(t), a.ID)
	require.NoError(t, err)
	c, created, err := f2.Allocate(ctx(t), req)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, a.ID, c.ID)
	assert.Equal(t, keyspace.StateReleased, c.State)

	t.Run("concurrent requests on two fleets", func(t *testing.T) {
		for round := range 5 {
			key := fmt.Sprintf("race-%d", round)
			var wg sync.WaitGroup
			results := make([]api.Allocation, 8)
			createdFlags := make([]bool, 8)
			errs := make([]error, 8)
			for i := range 8 {
				f := []*Fleet{f1, f2}[i%2]
				wg.Go(func() {
					results[i], createdFlags[i], errs[i] = f.Allocate(ctx(t),
						api.AllocationRequest{CPU: 1, GPU: 1, IdempotencyKey: key})
				})
			}
			wg.Wait()

			createdCount := 0
			for i := range 8 {
				require.NoError(t, errs[i])
				assert.Equal(t, results[0].ID, results[i].ID)
				if createdFlags[i] {
					createdCount++
				}
			}
			assert.Equal(t, 1, createdCount, "round %d", round)
		}

		resp, err := e.cli.Get(ctx(t), e.ks.AllocationsPrefix(), clientv3.WithPrefix(),
			clientv3.WithCountOnly())
		require.NoError(t, err)
		assert.Equal(t, int64(6), resp.Count, "one record per key")
	})
}

// Not parallel: it loads the machine for a few seconds.
func TestConcurrentAllocationKeepsInvariant(t *testing.T) {
	e := newEnv(t)
	obs := &recordingObserver{}
	withObserver := func(c *Config) { c.Observer = obs }
	fleets := []*Fleet{e.startFleet(t, withObserver), e.startFleet(t, withObserver)}
	for _, id := range []string{"h1", "h2", "h3"} {
		e.registerHost(t, hostDoc(id, 32, 128, 8))
		for _, f := range fleets {
			waitHealth(t, f, id, api.HealthHealthy, 5*time.Second)
		}
	}

	const clients = 32
	deadline := time.Now().Add(4 * time.Second)
	var created, released, full, busy atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		f := fleets[i%2]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			var owned []string
			for time.Now().Before(deadline) {
				if len(owned) > 0 && (len(owned) >= 2 || rng.IntN(2) == 0) {
					j := rng.IntN(len(owned))
					_, err := f.Release(context.Background(), owned[j])
					if err == nil {
						released.Add(1)
						owned = append(owned[:j], owned[j+1:]...)
					} else if !assert.ErrorIs(t, err, service.ErrUnavailable) {
						return
					}
					continue
				}

				a, _, err := f.Allocate(context.Background(), api.AllocationRequest{
					CPU:      1 + rng.IntN(4),
					Memory:   int64(1+rng.IntN(8)) * gib,
					GPU:      rng.IntN(3),
					Strategy: api.Strategies[rng.IntN(len(api.Strategies))],
				})
				switch {
				case err == nil:
					created.Add(1)
					owned = append(owned, a.ID)
				case errors.Is(err, service.ErrNoCapacity):
					full.Add(1)
				case errors.Is(err, service.ErrUnavailable):
					busy.Add(1)
				default:
					t.Errorf("allocate: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	conflicts := fleets[0].Stats().CASConflicts + fleets[1].Stats().CASConflicts
	t.Logf("created %d, released %d, no capacity %d, gave up %d, "+
		"CAS conflicts %d", created.Load(), released.Load(), full.Load(),
		busy.Load(), conflicts)
	assert.Positive(t, created.Load())
	assert.Positive(t, released.Load())
	assert.Positive(t, conflicts, "the clients never raced")
	assert.Equal(t, conflicts, obs.count("conflict "+OpAllocate)+
		obs.count("conflict "+OpRelease))
	assert.Equal(t, created.Load(), int64(obs.count("allocation "+OutcomeCreated)))
	assert.Equal(t, full.Load(), int64(obs.count("allocation "+OutcomeNoCapacity)))

	active := checkInvariant(t, e)

	// Both views converge to what etcd holds.
	for _, f := range fleets {
		require.Eventually(t, func() bool {
			list, err := f.ListAllocations(ctx(t),
				service.AllocationFilter{State: keyspace.StateActive})
			require.NoError(t, err)
			return len(list) == active
		}, 5*time.Second, 20*time.Millisecond)
	}
}

// checkInvariant reads etcd directly and checks, per host, that the ledger
// stays within the registered totals, that no GPU is owned twice and that
// active records and ledger entries match one to one. It returns the
// number of active allocations.
func checkInvariant(t *testing.T, e *env) int {
	t.Helper()
	resp, err := e.cli.Get(ctx(t), e.ks.Root(), clientv3.WithPrefix())
	require.NoError(t, err)

	infos := map[string]*keyspace.HostInfo{}
	ledgers := map[string]*keyspace.Ledger{}
	records := map[string]*keyspace.Allocation{}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		pk, err := e.ks.ParseKey(key)
		require.NoError(t, err)
		switch pk.Kind {
		case keyspace.KindHostInfo:
			infos[pk.ID], err = keyspace.DecodeHostInfo(key, kv.Value)
		case keyspace.KindHostLedger:
			ledgers[pk.ID], err = keyspace.DecodeLedger(key, kv.Value)
		case keyspace.KindAllocation:
			records[pk.ID], err = keyspace.DecodeAllocation(key, kv.Value)
		}
		require.NoError(t, err)
	}

	holder := map[string]string{}
	for hostID, l := range ledgers {
		info := infos[hostID]
		require.NotNil(t, info, "ledger of unregistered host %q", hostID)
		cpu, memory, gpus := l.Totals()
		assert.LessOrEqual(t, cpu, info.TotalCPU, "host %q cpu", hostID)
		assert.LessOrEqual(t, memory, info.TotalMemory, "host %q memory", hostID)
		assert.LessOrEqual(t, gpus, len(info.GPUs), "host %q gpus", hostID)

		for allocID, entry := range l.Allocations {
			for _, uuid := range entry.GPUs {
				prev, dup := holder[uuid]
				assert.False(t, dup, "GPU %q owned by %q and %q", uuid, prev, allocID)
				holder[uuid] = allocID
			}
			rec := records[allocID]
			if assert.NotNil(t, rec, "ledger entry %q has no record", allocID) {
				assert.Equal(t, keyspace.StateActive, rec.State)
				assert.Equal(t, hostID, rec.HostID)
				want := rec.LedgerEntry()
				assert.Equal(t, want.CPU, entry.CPU, "allocation %q cpu", allocID)
				assert.Equal(t, want.Memory, entry.Memory, "allocation %q memory", allocID)
				assert.ElementsMatch(t, want.GPUs, entry.GPUs, "allocation %q GPUs", allocID)
			}
		}
	}

	active := 0
	for id, rec := range records {
		if rec.State != keyspace.StateActive {
			continue
		}
		active++
		l := ledgers[rec.HostID]
		if assert.NotNil(t, l, "active %q on host without ledger", id) {
			assert.Contains(t, l.Allocations, id)
		}
	}
	return active
}

func TestIdempotencyKeyComparesTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 64, 256, 0))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	req := api.AllocationRequest{CPU: 1, TTLSeconds: 60, IdempotencyKey: "job-ttl"}
	a, created, err := f.Allocate(ctx(t), req)
	require.NoError(t, err)
	require.True(t, created)

	same, created, err := f.Allocate(ctx(t), req)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, a.ID, same.ID)

	tests := []struct {
		name string
		ttl  int64
		want string
	}{
		{"longer ttl", 120, "with ttl_seconds 60, not 120"},
		{"no ttl", 0, "with ttl_seconds 60, not 0 (no TTL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := req
			other.TTLSeconds = tt.ttl
			_, _, err := f.Allocate(ctx(t), other)
			require.ErrorIs(t, err, service.ErrConflict)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), `idempotency key "job-ttl"`)
			assert.Contains(t, err.Error(), "use a new key")
		})
	}

	// A request without ttl_seconds matches an allocation that got the
	// default TTL.
	withDefault := e.startFleet(t, func(c *Config) {
		c.DefaultAllocationTTL = 90 * time.Second
	})
	waitHealth(t, withDefault, "h1", api.HealthHealthy, 5*time.Second)
	defaulted := api.AllocationRequest{CPU: 1, IdempotencyKey: "job-default"}
	b, created, err := withDefault.Allocate(ctx(t), defaulted)
	require.NoError(t, err)
	require.True(t, created)
	assert.Equal(t, int64(90), b.TTLSeconds)
	again, created, err := withDefault.Allocate(ctx(t), defaulted)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, b.ID, again.ID)
	_, _, err = f.Allocate(ctx(t), defaulted)
	require.ErrorIs(t, err, service.ErrConflict)
	assert.Contains(t, err.Error(), "with ttl_seconds 90, not 0 (no TTL)")
}
