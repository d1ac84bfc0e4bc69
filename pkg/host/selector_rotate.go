package host

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
)

// RoundRobinSelector cycles through the eligible hosts in ID order: each
// Select returns the eligible host with the smallest ID greater than the
// previous pick, wrapping around to the smallest ID. Because it remembers
// an ID rather than a position, hosts may join or leave between calls.
// It is safe for concurrent use; concurrent calls are serialized.
type RoundRobinSelector struct {
	// mu guards last and serializes Select and Rank, so two concurrent
	// callers never get the same turn.
	mu   sync.Mutex
	last string
}

// RandomSelector picks an eligible host uniformly at random. It is safe
// for concurrent use.
type RandomSelector struct {
	// mu guards rng, which is not safe for concurrent use.
	mu  sync.Mutex
	rng *rand.Rand
}

var (
	_ HostSelector = (*RoundRobinSelector)(nil)
	_ HostRanker   = (*RoundRobinSelector)(nil)
	_ HostSelector = (*RandomSelector)(nil)
	_ HostRanker   = (*RandomSelector)(nil)
)

// NewRoundRobinSelector returns a selector whose first pick is the
// eligible host with the smallest ID.
func NewRoundRobinSelector() *RoundRobinSelector {
	return &RoundRobinSelector{}
}

// Select returns a copy of the next eligible host after the previous pick
// in ID order, and makes it the new previous pick.
func (s *RoundRobinSelector) Select(
	hosts []*HostInfo, req ResourceRequirement,
) (*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	next := s.nextAfter(hosts, req, s.last)
	if next == nil {
		// Wrap around: the smallest ID is the first one after "", since
		// a host's ID is never empty.
		next = s.nextAfter(hosts, req, "")
	}
	if next == nil {
		return nil, explainNoHost(hosts, req)
	}

	s.last = next.ID
	return next.Clone(), nil
}

// nextAfter returns the eligible host with the smallest ID greater than
// after, or nil when there is none. Most hosts cost one ID comparison.
func (s *RoundRobinSelector) nextAfter(
	hosts []*HostInfo, req ResourceRequirement, after string,
) *HostInfo {
	var next *HostInfo
	for _, h := range hosts {
		if !eligible(h, req) || h.ID <= after {
			continue
		}
		if next == nil || h.ID < next.ID {
			next = h
		}
	}
	return next
}

// Rank returns copies of all eligible hosts in the order that successive
// Select calls would return them, and advances the rotation by one, as a
// Select call would.
func (s *RoundRobinSelector) Rank(
	hosts []*HostInfo, req ResourceRequirement,
) ([]*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}

	ranked := eligibleByID(hosts, req)
	if len(ranked) == 0 {
		return nil, explainNoHost(hosts, req)
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	// Start at the first host whose ID is greater than the previous pick.
	start, _ := slices.BinarySearchFunc(ranked, s.last,
		func(h *HostInfo, id string) int {
			return strings.Compare(h.ID, id)
		})
	if start < len(ranked) && ranked[start].ID == s.last {
		start++
	}
	if start == len(ranked) {
		start = 0
	}

	out := append(ranked[start:len(ranked):len(ranked)], ranked[:start]...)
	s.last = out[0].ID
	return out, nil
}

// NewRandomSelector returns a selector seeded from the runtime's random
// source, so each instance picks a different sequence.
func NewRandomSelector() *RandomSelector {
	return NewRandomSelectorWithSeed(rand.Int64())
}

// NewRandomSelectorWithSeed returns a selector whose picks are determined
// by seed: two selectors with the same seed, called with the same hosts in
// the same order, return the same sequence.
func NewRandomSelectorWithSeed(seed int64) *RandomSelector {
	src := rand.NewPCG(uint64(seed), 0)
	return &RandomSelector{rng: rand.New(src)}
}

// Select returns a copy of an eligible host chosen uniformly at random.
// It allocates only the returned copy.
func (s *RandomSelector) Select(
	hosts []*HostInfo, req ResourceRequirement,
) (*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}

	// Count the eligible hosts in randomBlocks blocks of consecutive
	// hosts, so that finding the pick scans one block, not all hosts.
	var before [randomBlocks]int
	blockLen := (len(hosts) + randomBlocks - 1) / randomBlocks
	count := 0
	for b := range before {
		before[b] = count
		for _, h := range blockOf(hosts, b, blockLen) {
			if eligible(h, req) {
				count++
			}
		}
	}
	if count == 0 {
		return nil, explainNoHost(hosts, req)
	}

	s.mu.Lock()
	pick := s.rng.IntN(count)
	s.mu.Unlock()

	// The pick lies in the last block with at most pick eligible hosts
	// before it.
	b := randomBlocks - 1
	for before[b] > pick {
		b--
	}
	pick -= before[b]
	for _, h := range blockOf(hosts, b, blockLen) {
		if !eligible(h, req) {
			continue
		}
		if pick == 0 {
			return h.Clone(), nil
		}
		pick--
	}

	// Only reachable when another goroutine changes hosts between the
	// two passes, which the HostSelector contract forbids.
	return nil, explainNoHost(hosts, req)
}

// randomBlocks is the number of blocks RandomSelector.Select splits hosts
// into. The counts live on the stack, so Select still allocates nothing
// but its result.
const randomBlocks = 64

// blockOf returns block b of hosts when hosts is split into blocks of
// blockLen hosts. The last blocks may be short or empty.
func blockOf(hosts []*HostInfo, b, blockLen int) []*HostInfo {
	start := min(b*blockLen, len(hosts))
	end := min(start+blockLen, len(hosts))
	return hosts[start:end]
}

// Rank returns copies of all eligible hosts in a random order. The
// shuffle starts from the hosts sorted by ID, so with a fixed seed the
// order does not depend on the order of the input slice.
func (s *RandomSelector) Rank(
	hosts []*HostInfo, req ResourceRequirement,
) ([]*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}

	ranked := eligibleByID(hosts, req)
	if len(ranked) == 0 {
		return nil, explainNoHost(hosts, req)
	}

	s.mu.Lock()
	s.rng.Shuffle(len(ranked), func(i, j int) {
		ranked[i], ranked[j] = ranked[j], ranked[i]
	})
	s.mu.Unlock()
	return ranked, nil
}

// eligibleByID returns copies of the hosts eligible for req, sorted by ID.
func eligibleByID(hosts []*HostInfo, req ResourceRequirement) []*HostInfo {
	var out []*HostInfo
	for _, h := range hosts {
		if eligible(h, req) {
			out = append(out, h.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *HostInfo) int {
		return strings.Compare(a.ID, b.ID)
	})
	return out
}
