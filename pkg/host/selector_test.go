package host

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// namedSelector pairs a selector constructor with a readable name.
type namedSelector struct {
	name string
	make func() HostSelector
}

// allSelectors lists every selector the package provides.
func allSelectors() []namedSelector {
	return []namedSelector{
		{"least used", func() HostSelector { return NewLeastUsedSelector() }},
		{"most free", func() HostSelector { return NewMostFreeSelector() }},
		{"bin pack", func() HostSelector { return NewBinPackSelector() }},
		{"round robin", func() HostSelector { return NewRoundRobinSelector() }},
		{"random", func() HostSelector { return NewRandomSelectorWithSeed(1) }},
	}
}

func TestScoringSelectors(t *testing.T) {
	small := func() *HostInfo { return idleHost("small", res(8, 32, 0)) }
	large := func() *HostInfo {
		return newHost("large", res(64, 256, 8), res(32, 128, 4))
	}
	almostFull := func() *HostInfo {
		return newHost("almost-full", res(4, 16, 1), res(3, 12, 0))
	}
	empty := func() *HostInfo { return idleHost("empty", res(4, 16, 1)) }

	tests := []struct {
		name  string
		hosts []*HostInfo
		req   ResourceRequirement
		// want maps selector name to the expected host ID.
		want map[string]string
	}{
		{
			name:  "single fitting host",
			hosts: []*HostInfo{idleHost("h1", res(4, 4, 1))},
			req:   res(1, 1, 1),
			want:  map[string]string{"least used": "h1", "most free": "h1", "bin pack": "h1"},
		},
		{
			name: "tie goes to lowest id",
			hosts: []*HostInfo{
				idleHost("b", res(4, 4, 1)),
				idleHost("a", res(4, 4, 1)),
				idleHost("c", res(4, 4, 1)),
			},
			req:  res(1, 1, 0),
			want: map[string]string{"least used": "a", "most free": "a", "bin pack": "a"},
		},
		{
			name:  "small idle host against large half used host",
			hosts: []*HostInfo{large(), small()},
			req:   res(1, 1, 0),
			want: map[string]string{
				"least used": "small", "most free": "large", "bin pack": "large",
			},
		},
		{
			name:  "bin pack prefers fullest host that fits",
			hosts: []*HostInfo{empty(), almostFull()},
			req:   res(1, 4, 1),
			want: map[string]string{
				"least used": "empty", "most free": "empty", "bin pack": "almost-full",
			},
		},
		{
			name:  "bin pack skips full host that does not fit",
			hosts: []*HostInfo{empty(), almostFull()},
			req:   res(2, 4, 1),
			want: map[string]string{
				"least used": "empty", "most free": "empty", "bin pack": "empty",
			},
		},
		{
			name: "inactive host skipped",
			hosts: []*HostInfo{
				withStatus(idleHost("idle-draining", res(8, 8, 1)), StatusDraining),
				withStatus(idleHost("idle-unknown", res(8, 8, 1)), "maintenance"),
				newHost("busy-active", res(8, 8, 1), res(6, 6, 0)),
			},
			req: res(1, 1, 1),
			want: map[string]string{
				"least used": "busy-active", "most free": "busy-active",
				"bin pack": "busy-active",
			},
		},
		{
			name: "host short of one resource skipped",
			hosts: []*HostInfo{
				idleHost("no-gpu", res(64, 256, 0)),
				newHost("gpu", res(8, 16, 2), res(6, 8, 1)),
			},
			req:  res(1, 1, 1),
			want: map[string]string{"least used": "gpu", "most free": "gpu", "bin pack": "gpu"},
		},
		{
			name: "zero totals score without division by zero",
			hosts: []*HostInfo{
				idleHost("zero", ResourceRequirement{}),
				newHost("cpu-only", res(4, 0, 0), res(1, 0, 0)),
			},
			req: ResourceRequirement{},
			want: map[string]string{
				"least used": "zero", "most free": "cpu-only", "bin pack": "cpu-only",
			},
		},
		{
			name:  "nil entries skipped",
			hosts: []*HostInfo{nil, idleHost("h1", res(4, 4, 1)), nil},
			req:   res(1, 1, 1),
			want:  map[string]string{"least used": "h1", "most free": "h1", "bin pack": "h1"},
		},
	}

	selectors := allSelectors()[:3]
	for _, tt := range tests {
		for _, s := range selectors {
			t.Run(tt.name+"/"+s.name, func(t *testing.T) {
				got, err := s.make().Select(tt.hosts, tt.req)
				require.NoError(t, err)
				assert.Equal(t, tt.want[s.name], got.ID)
			})
		}
	}
}

func TestScoringSelectorsIgnoreInputOrder(t *testing.T) {
	hosts := []*HostInfo{
		newHost("a", res(16, 64, 2), res(8, 32, 1)),
		newHost("b", res(16, 64, 2), res(8, 32, 1)),
		newHost("c", res(32, 64, 4), res(4, 8, 0)),
		newHost("d", res(8, 32, 1), res(2, 8, 0)),
		newHost("e", res(16, 64, 2), res(8, 32, 1)),
	}
	req := res(2, 4, 1)
	rng := rand.New(rand.NewPCG(7, 7))

	for _, s := range allSelectors()[:3] {
		t.Run(s.name, func(t *testing.T) {
			sel := s.make()
			first, err := sel.Select(hosts, req)
			require.NoError(t, err)

			for range 20 {
				shuffled := append([]*HostInfo(nil), hosts...)
				rng.Shuffle(len(shuffled), func(i, j int) {
					shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
				})
				got, err := sel.Select(shuffled, req)
				require.NoError(t, err)
				assert.Equal(t, first.ID, got.ID)
			}
		})
	}
}

func TestSelectorsNoHostAvailable(t *testing.T) {
	tests := []struct {
		name    string
		hosts   []*HostInfo
		req     ResourceRequirement
		wantMsg string
	}{
		{
			name:    "empty list",
			hosts:   nil,
			req:     res(1, 1, 0),
			wantMsg: "no host available: no hosts",
		},
		{
			name:    "only nil entries",
			hosts:   []*HostInfo{nil, nil},
			req:     res(1, 1, 0),
			wantMsg: "no host available: no hosts",
		},
		{
			name: "no active hosts",
			hosts: []*HostInfo{
				withStatus(idleHost("a", res(8, 8, 1)), StatusDraining),
				withStatus(idleHost("b", res(8, 8, 1)), ""),
			},
			req:     res(1, 1, 0),
			wantMsg: "no host available: no active hosts among 2 hosts",
		},
		{
			name: "gpu shortfall",
			hosts: []*HostInfo{
				newHost("a", res(32, 128, 4), res(0, 0, 2)),
				newHost("b", res(32, 128, 4), res(0, 0, 3)),
				// A draining host's free GPUs do not count.
				withStatus(idleHost("c", res(32, 128, 8)), StatusDraining),
			},
			req: res(4, 16, 4),
			wantMsg: "no host available: need 4 GPU, " +
				"at most 2 free on any active host",
		},
		{
			name:  "memory shortfall",
			hosts: []*HostInfo{newHost("a", res(32, 64, 0), res(0, 48, 0))},
			req:   res(1, 64, 0),
			wantMsg: "no host available: need 64 GiB memory, " +
				"at most 16 GiB free on any active host",
		},
		{
			name:  "several shortfalls",
			hosts: []*HostInfo{idleHost("a", res(2, 8, 0))},
			req:   res(4, 8, 1),
			wantMsg: "no host available: need 4 CPU, at most 2 free " +
				"on any active host; need 1 GPU, at most 0 free on any active host",
		},
		{
			name: "resources split across hosts",
			hosts: []*HostInfo{
				idleHost("cpu-rich", res(64, 64, 0)),
				idleHost("gpu-rich", res(2, 64, 8)),
			},
			req: res(8, 8, 1),
			wantMsg: "no host available: no active host has " +
				"8 CPU, 8 GiB memory, 1 GPU free at once (2 active hosts)",
		},
	}
	for _, tt := range tests {
		for _, s := range allSelectors() {
			t.Run(tt.name+"/"+s.name, func(t *testing.T) {
				got, err := s.make().Select(tt.hosts, tt.req)
				require.ErrorIs(t, err, ErrNoHostAvailable)
				assert.Nil(t, got)
				assert.Equal(t, tt.wantMsg, err.Error())
			})
		}
	}
}

func TestSelectorsRejectNegativeRequirement(t *testing.T) {
	hosts := []*HostInfo{idleHost("a", res(8, 8, 1))}
	for _, s := range allSelectors() {
		t.Run(s.name, func(t *testing.T) {
			_, err := s.make().Select(hosts, ResourceRequirement{GPU: -1})
			require.ErrorIs(t, err, ErrInvalidRequirement)
			assert.Contains(t, err.Error(), "gpu is -1")

			ranker, ok := s.make().(HostRanker)
			require.True(t, ok, "selector implements HostRanker")
			_, err = ranker.Rank(hosts, ResourceRequirement{CPU: -2})
			require.ErrorIs(t, err, ErrInvalidRequirement)
			assert.Contains(t, err.Error(), "cpu is -2")
		})
	}
}

func TestSelectorsReturnCopy(t *testing.T) {
	for _, s := range allSelectors() {
		t.Run(s.name, func(t *testing.T) {
			original := idleHost("a", res(8, 8, 1))
			original.Labels = map[string]string{"zone": "a"}

			got, err := s.make().Select([]*HostInfo{original}, res(1, 1, 1))
			require.NoError(t, err)
			require.NotSame(t, original, got)

			got.UsedCPU = 8
			got.Labels["zone"] = "b"
			assert.Equal(t, 0, original.UsedCPU)
			assert.Equal(t, "a", original.Labels["zone"])
		})
	}
}

func TestRankMatchesSelect(t *testing.T) {
	hosts := []*HostInfo{
		newHost("a", res(16, 64, 2), res(8, 32, 1)),
		newHost("b", res(16, 64, 2), res(8, 32, 1)),
		newHost("c", res(32, 64, 4), res(4, 8, 0)),
		newHost("d", res(8, 32, 1), res(2, 8, 0)),
		newHost("full", res(8, 32, 1), res(8, 32, 1)),
		withStatus(idleHost("draining", res(64, 64, 8)), StatusDraining),
	}
	req := res(2, 4, 1)

	tests := []struct {
		name   string
		ranker func() HostRanker
		want   []string
	}{
		{"least used", func() HostRanker { return NewLeastUsedSelector() },
			[]string{"c", "d", "a", "b"}},
		{"most free", func() HostRanker { return NewMostFreeSelector() },
			[]string{"c", "a", "b", "d"}},
		{"bin pack", func() HostRanker { return NewBinPackSelector() },
			[]string{"a", "b", "d", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ranked, err := tt.ranker().Rank(hosts, req)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ids(ranked))

			first, err := tt.ranker().(HostSelector).Select(hosts, req)
			require.NoError(t, err)
			assert.Equal(t, ranked[0].ID, first.ID)

			for i, h := range ranked {
				assert.NotSame(t, hosts[0], h, "rank %d is a copy", i)
			}
		})
	}
}

func TestRankNoHostAvailable(t *testing.T) {
	hosts := []*HostInfo{idleHost("a", res(1, 1, 0))}
	for _, s := range allSelectors() {
		t.Run(s.name, func(t *testing.T) {
			ranked, err := s.make().(HostRanker).Rank(hosts, res(1, 1, 1))
			require.ErrorIs(t, err, ErrNoHostAvailable)
			assert.Nil(t, ranked)
			assert.Contains(t, err.Error(), "need 1 GPU")
		})
	}
}

func TestRoundRobinCycles(t *testing.T) {
	hosts := []*HostInfo{
		idleHost("c", res(4, 4, 1)),
		idleHost("a", res(4, 4, 1)),
		withStatus(idleHost("b", res(4, 4, 1)), StatusDraining),
		idleHost("d", res(4, 4, 0)),
	}
	sel := NewRoundRobinSelector()

	var got []string
	for range 5 {
		h, err := sel.Select(hosts, res(1, 1, 0))
		require.NoError(t, err)
		got = append(got, h.ID)
	}
	assert.Equal(t, []string{"a", "c", "d", "a", "c"}, got)

	// A request that d cannot take skips it and wraps around.
	h, err := sel.Select(hosts, res(1, 1, 1))
	require.NoError(t, err)
	assert.Equal(t, "a", h.ID)
}

func TestRoundRobinSurvivesHostChanges(t *testing.T) {
	sel := NewRoundRobinSelector()
	all := []*HostInfo{
		idleHost("a", res(4, 4, 1)),
		idleHost("b", res(4, 4, 1)),
		idleHost("c", res(4, 4, 1)),
	}

	h, err := sel.Select(all, ResourceRequirement{})
	require.NoError(t, err)
	require.Equal(t, "a", h.ID)

	// b leaves: the rotation continues with c rather than restarting.
	h, err = sel.Select([]*HostInfo{all[0], all[2]}, ResourceRequirement{})
	require.NoError(t, err)
	assert.Equal(t, "c", h.ID)
}

func TestRoundRobinRank(t *testing.T) {
	hosts := []*HostInfo{
		idleHost("c", res(4, 4, 1)),
		idleHost("a", res(4, 4, 1)),
		idleHost("b", res(4, 4, 1)),
	}
	sel := NewRoundRobinSelector()

	ranked, err := sel.Rank(hosts, ResourceRequirement{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, ids(ranked))

	// Rank advanced the rotation by one, so Select continues after a.
	h, err := sel.Select(hosts, ResourceRequirement{})
	require.NoError(t, err)
	assert.Equal(t, "b", h.ID)

	ranked, err = sel.Rank(hosts, ResourceRequirement{})
	require.NoError(t, err)
	assert.Equal(t, []string{"c", "a", "b"}, ids(ranked))
}

func TestRoundRobinConcurrentTurns(t *testing.T) {
	hosts := []*HostInfo{
		idleHost("a", res(4, 4, 1)),
		idleHost("b", res(4, 4, 1)),
		idleHost("c", res(4, 4, 1)),
		idleHost("d", res(4, 4, 1)),
	}
	sel := NewRoundRobinSelector()

	const goroutines, perGoroutine = 8, 50
	var mu sync.Mutex
	counts := make(map[string]int)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				h, err := sel.Select(hosts, ResourceRequirement{})
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				counts[h.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// Turns are serialized, so every host gets exactly its share.
	want := goroutines * perGoroutine / len(hosts)
	for _, h := range hosts {
		assert.Equal(t, want, counts[h.ID], "host %s", h.ID)
	}
}

func TestRandomSeedIsReproducible(t *testing.T) {
	hosts := make([]*HostInfo, 10)
	for i := range hosts {
		hosts[i] = idleHost(fmt.Sprintf("h%02d", i), res(4, 4, 1))
	}
	hosts[3].Status = StatusDraining

	first := NewRandomSelectorWithSeed(42)
	second := NewRandomSelectorWithSeed(42)
	seen := make(map[string]bool)
	for range 200 {
		a, err := first.Select(hosts, res(1, 1, 1))
		require.NoError(t, err)
		b, err := second.Select(hosts, res(1, 1, 1))
		require.NoError(t, err)
		assert.Equal(t, a.ID, b.ID)
		seen[a.ID] = true
	}

	assert.Len(t, seen, 9, "every eligible host is picked at least once")
	assert.False(t, seen["h03"], "draining host is never picked")
}

func TestRandomRankIgnoresInputOrder(t *testing.T) {
	hosts := []*HostInfo{
		idleHost("a", res(4, 4, 1)),
		idleHost("b", res(4, 4, 1)),
		idleHost("c", res(4, 4, 1)),
		idleHost("d", res(4, 4, 0)),
	}
	reversed := []*HostInfo{hosts[3], hosts[2], hosts[1], hosts[0]}

	got, err := NewRandomSelectorWithSeed(9).Rank(hosts, res(1, 1, 1))
	require.NoError(t, err)
	again, err := NewRandomSelectorWithSeed(9).Rank(reversed, res(1, 1, 1))
	require.NoError(t, err)

	assert.Equal(t, ids(got), ids(again))
	assert.ElementsMatch(t, []string{"a", "b", "c"}, ids(got))
}

func TestRandomConcurrentUse(t *testing.T) {
	hosts := []*HostInfo{
		idleHost("a", res(4, 4, 1)),
		idleHost("b", res(4, 4, 1)),
	}
	sel := NewRandomSelector()

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				h, err := sel.Select(hosts, ResourceRequirement{})
				if assert.NoError(t, err) {
					assert.Contains(t, []string{"a", "b"}, h.ID)
				}
			}
		})
	}
	wg.Wait()
}

func TestScoresAgreeWithUsageRate(t *testing.T) {
	hosts := benchHosts(2_000)
	req := res(4, 16, 1)

	minRate, maxAfter := 2.0, -1.0
	for _, h := range hosts {
		if !eligible(h, req) {
			continue
		}
		minRate = min(minRate, h.UsageRate())
		after := h.Clone()
		after.UsedCPU += req.CPU
		after.UsedMemory += req.Memory
		after.UsedGPU += req.GPU
		maxAfter = max(maxAfter, after.UsageRate())
	}

	// Selectors compare fractions by cross-multiplication rather than
	// UsageRate itself, so allow for rounding.
	least, err := NewLeastUsedSelector().Select(hosts, req)
	require.NoError(t, err)
	assert.InDelta(t, minRate, least.UsageRate(), 1e-12)

	packed, err := NewBinPackSelector().Select(hosts, req)
	require.NoError(t, err)
	packed.UsedCPU += req.CPU
	packed.UsedMemory += req.Memory
	packed.UsedGPU += req.GPU
	assert.InDelta(t, maxAfter, packed.UsageRate(), 1e-12)
}

func TestScoreCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b score
		want int
	}{
		{"equal fractions", score{1, 2}, score{2, 4}, 0},
		{"greater", score{3, 4}, score{1, 2}, 1},
		{"less", score{1, 3}, score{1, 2}, -1},
		{"negative numerator", score{-1, 8}, score{0, 1}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.a.compare(tt.b))
		})
	}
}
