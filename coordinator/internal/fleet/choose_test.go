package fleet

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// variedViewFleet returns a view-only Fleet of 40 hosts of four shapes
// and one larger host, with varying usage, so hosts tie in some
// strategies and most_free's scale depends on whether h03 is a
// candidate.
func variedViewFleet(t *testing.T) *Fleet {
	t.Helper()
	f := emptyViewFleet(t)
	for i := range 40 {
		var info *keyspace.HostInfo
		id := fmt.Sprintf("h%02d", i)
		switch {
		case i == 3:
			info = hostDoc(id, 256, 1024, 16)
		case i%4 == 0:
			info = hostDoc(id, 16, 64, 8)
		case i%4 == 1:
			info = hostDoc(id, 32, 128, 4)
		case i%4 == 2:
			info = hostDoc(id, 8, 32, 2)
		default:
			info = hostDoc(id, 64, 256, 8)
		}
		used := (i / 4) % min(len(info.GPUs), 3)
		putViewHost(t, f, info, ledgerHolding(info, used, 2, 4*gib))
	}
	return f
}

// rankAndPick picks a host by ranking every candidate and taking the
// first one not in raced, or the first one when all are in raced.
func rankAndPick(
	t *testing.T, f *Fleet, r request, raced map[string]bool,
) string {
	t.Helper()
	buf := &candidateBuffer{}
	candidates, err := f.candidates(r, nil, buf)
	require.NoError(t, err)
	want := host.ResourceRequirement{CPU: r.CPU, Memory: r.Memory, GPU: r.GPU}
	ranked, err := f.rankers[r.Strategy].Rank(candidates, want)
	require.NoError(t, err)
	for _, h := range ranked {
		if !raced[h.ID] {
			return h.ID
		}
	}
	return ranked[0].ID
}

func TestChooseHostMatchesRankAndPick(t *testing.T) {
	t.Parallel()
	deterministic := []string{api.StrategyLeastUsed, api.StrategyMostFree,
		api.StrategyBinPack, api.StrategyRoundRobin}
	for _, strategy := range deterministic {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			// Two fleets with the same view, so round_robin's rotation
			// advances in both alike.
			f, ref := variedViewFleet(t), variedViewFleet(t)
			r, err := f.parseRequest(api.AllocationRequest{
				CPU: 2, Memory: 4 * gib, GPU: 1, Strategy: strategy,
			})
			require.NoError(t, err)

			// Each round replays an allocation that loses the race on
			// every host it tries, as place does, and then one that
			// finds every host raced.
			for round := range 4 {
				raced := map[string]bool{}
				for attempt := range 12 + round*10 {
					want := rankAndPick(t, ref, r, raced)
					got, err := f.chooseHost(r, nil, raced)
					require.NoError(t, err)
					require.Equal(t, want, got, "round %d, attempt %d",
						round, attempt)
					raced[got] = true
				}
			}
			raced := map[string]bool{}
			for i := range 40 {
				raced[fmt.Sprintf("h%02d", i)] = true
			}
			got, err := f.chooseHost(r, nil, raced)
			require.NoError(t, err)
			assert.Equal(t, rankAndPick(t, ref, r, raced), got,
				"every host raced")
		})
	}
}

func TestChooseHostRandomSkipsRaced(t *testing.T) {
	t.Parallel()
	f := variedViewFleet(t)
	r, err := f.parseRequest(api.AllocationRequest{
		CPU: 2, Memory: 4 * gib, GPU: 1, Strategy: api.StrategyRandom,
	})
	require.NoError(t, err)

	raced := map[string]bool{}
	for i := range 39 {
		raced[fmt.Sprintf("h%02d", i)] = true
	}
	for range 20 {
		got, err := f.chooseHost(r, nil, raced)
		require.NoError(t, err)
		assert.Equal(t, "h39", got)
	}

	raced["h39"] = true
	got, err := f.chooseHost(r, nil, raced)
	require.NoError(t, err)
	assert.NotEmpty(t, got, "a host is picked when every host raced")
}

func TestJudgeDuplicateStatusUUIDLastWins(t *testing.T) {
	t.Parallel()
	f := emptyViewFleet(t)
	r, err := f.parseRequest(api.AllocationRequest{GPU: 1})
	require.NoError(t, err)

	tests := []struct {
		name        string
		first, last string
		wantFree    []string
	}{
		{"unhealthy last", keyspace.GPUHealthy, keyspace.GPUUnhealthy,
			[]string{"GPU-h1-1"}},
		{"healthy last", keyspace.GPUUnhealthy, keyspace.GPUHealthy,
			[]string{"GPU-h1-0", "GPU-h1-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := hostDoc("h1", 16, 64, 2)
			st := statusDoc(info)
			st.GPUs[0].Health = tt.first
			dup := st.GPUs[0]
			dup.Health = tt.last
			st.GPUs = append(st.GPUs, dup)

			h := newHostState("h1")
			h.info, h.infoRev = info, 1
			h.setStatus(2, st, nil, time.Now())
			assert.False(t, h.statusGPUsDistinct)

			v := f.judge(h, r)
			assert.Equal(t, fits, v.verdict)
			assert.Equal(t, 2, v.capacity)
			assert.Equal(t, len(tt.wantFree), v.freeGPUs)
			var free []string
			for _, g := range f.freeGPUs(h, r) {
				free = append(free, g.UUID)
			}
			assert.Equal(t, tt.wantFree, free)
		})
	}
}

func TestFreeGPUsByIndexNotRegistrationOrder(t *testing.T) {
	t.Parallel()
	f := emptyViewFleet(t)
	r, err := f.parseRequest(api.AllocationRequest{GPU: 1})
	require.NoError(t, err)

	info := hostDoc("h1", 16, 64, 4)
	st := statusDoc(info)
	info.GPUs[0], info.GPUs[3] = info.GPUs[3], info.GPUs[0]
	h := newHostState("h1")
	h.info, h.infoRev = info, 1
	h.setStatus(2, st, nil, time.Now())
	h.ledger = ledgerHolding(hostDoc("h1", 16, 64, 4), 2, 1, gib)
	h.ledgerRev = 3

	var free []string
	for _, g := range f.freeGPUs(h, r) {
		free = append(free, g.UUID)
	}
	assert.Equal(t, []string{"GPU-h1-2", "GPU-h1-3"}, free)
	v := f.judge(h, r)
	assert.Equal(t, 4, v.capacity)
	assert.Equal(t, 2, v.freeGPUs)
}

func TestReadHostReusesViewDocuments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := newFakeClock()
	f := e.startFleet(t, func(c *Config) { c.Clock = clock.Now })

	e.registerHost(t, hostDoc("h1", 16, 64, 4))
	e.put(t, e.ks.HostInfo("h2"), encode(t, hostDoc("h2", 8, 32, 2)))
	e.put(t, e.ks.HostStatus("h2"), encode(t, statusDoc(hostDoc("h2", 8, 32, 2))))
	e.put(t, e.ks.HostLedger("h2"), "{not json")
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	_, _, err := f.Allocate(ctx(t), api.AllocationRequest{CPU: 1, GPU: 1})
	require.NoError(t, err)
	f.waitForRevision(ctx(t), e.put(t, "/rg/unrelated", "x"))

	// cold has an empty view, so its readHost decodes every key.
	cold, err := New(e.config())
	require.NoError(t, err)
	cold.now = clock.Now

	for _, id := range []string{"h1", "h2", "h3"} {
		got, err := f.readHost(ctx(t), OpRead, id)
		require.NoError(t, err)
		want, err := cold.readHost(ctx(t), OpRead, id)
		require.NoError(t, err)
		assert.Equal(t, want, got, "host %s", id)

		known := f.viewDocuments(id)
		if known.infoRev > 0 {
			assert.Same(t, known.info, got.info, "host %s info", id)
		}
	}
}
