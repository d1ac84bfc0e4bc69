package host

import (
	"fmt"
	"slices"
	"strings"
)

// HostSelector picks one host for a request.
//
// A host is eligible when its Status is StatusActive and CanAllocate(req)
// is true; nil entries are skipped. Select returns a copy of the chosen
// host, never an element of hosts. When no host is eligible it returns an
// error wrapping ErrNoHostAvailable with the reason, and a requirement
// with a negative field yields an error wrapping ErrInvalidRequirement.
// Implementations must not modify hosts or its elements.
type HostSelector interface {
	Select(hosts []*HostInfo, req ResourceRequirement) (*HostInfo, error)
}

// HostRanker orders every eligible host best-first with the same rules
// Select uses, so a caller that loses a race for the first host can try
// the next one. Rank returns copies and the same errors as Select.
type HostRanker interface {
	Rank(hosts []*HostInfo, req ResourceRequirement) ([]*HostInfo, error)
}

// scoredSelector implements Select and Rank for one scoring strategy.
// Both make linear passes over hosts; Select allocates only the returned
// copy.
type scoredSelector struct {
	kind scoreKind
}

// LeastUsedSelector picks the eligible host with the lowest UsageRate.
// Ties go to the lowest host ID. It holds no state and is safe for
// concurrent use.
type LeastUsedSelector struct{ scored scoredSelector }

// MostFreeSelector picks the eligible host with the most free resources,
// scored as
//
//	0.4 × freeCPU/maxCPU + 0.4 × freeMemory/maxMemory + 0.2 × freeGPU/maxGPU
//
// where each max is the largest total of that resource among the eligible
// hosts, and a resource whose max is 0 contributes 0. Unlike
// LeastUsedSelector it prefers a large half-used host over a small idle
// one. Ties go to the lowest host ID. It is safe for concurrent use.
type MostFreeSelector struct{ scored scoredSelector }

// BinPackSelector picks the eligible host that would have the highest
// UsageRate after placing the request, so that empty hosts stay free for
// large requests. Ties go to the lowest host ID. It is safe for concurrent
// use.
type BinPackSelector struct{ scored scoredSelector }

var (
	_ HostSelector = (*LeastUsedSelector)(nil)
	_ HostRanker   = (*LeastUsedSelector)(nil)
	_ HostSelector = (*MostFreeSelector)(nil)
	_ HostRanker   = (*MostFreeSelector)(nil)
	_ HostSelector = (*BinPackSelector)(nil)
	_ HostRanker   = (*BinPackSelector)(nil)
)

// NewLeastUsedSelector returns a selector that spreads load by picking the
// eligible host with the lowest UsageRate.
func NewLeastUsedSelector() *LeastUsedSelector {
	return &LeastUsedSelector{scoredSelector{kind: scoreLeastUsed}}
}

// NewMostFreeSelector returns a selector that picks the eligible host with
// the most free resources relative to the largest eligible host.
func NewMostFreeSelector() *MostFreeSelector {
	return &MostFreeSelector{scoredSelector{kind: scoreMostFree}}
}

// NewBinPackSelector returns a selector that packs requests onto the
// fullest eligible host.
func NewBinPackSelector() *BinPackSelector {
	return &BinPackSelector{scoredSelector{kind: scoreBinPack}}
}

// Select returns a copy of the least used eligible host.
func (s *LeastUsedSelector) Select(
	hosts []*HostInfo, req ResourceRequirement,
) (*HostInfo, error) {
	return s.scored.selectBest(hosts, req)
}

// Rank returns copies of the eligible hosts, least used first.
func (s *LeastUsedSelector) Rank(
	hosts []*HostInfo, req ResourceRequirement,
) ([]*HostInfo, error) {
	return s.scored.rank(hosts, req)
}

// Select returns a copy of the eligible host with the most free resources.
func (s *MostFreeSelector) Select(
	hosts []*HostInfo, req ResourceRequirement,
) (*HostInfo, error) {
	return s.scored.selectBest(hosts, req)
}

// Rank returns copies of the eligible hosts, most free first.
func (s *MostFreeSelector) Rank(
	hosts []*HostInfo, req ResourceRequirement,
) ([]*HostInfo, error) {
	return s.scored.rank(hosts, req)
}

// Select returns a copy of the eligible host that would be fullest after
// placing req.
func (s *BinPackSelector) Select(
	hosts []*HostInfo, req ResourceRequirement,
) (*HostInfo, error) {
	return s.scored.selectBest(hosts, req)
}

// Rank returns copies of the eligible hosts, fullest after placement first.
func (s *BinPackSelector) Rank(
	hosts []*HostInfo, req ResourceRequirement,
) ([]*HostInfo, error) {
	return s.scored.rank(hosts, req)
}

// eligible reports whether h may receive req: it is present, active and
// has enough of every resource free.
func eligible(h *HostInfo, req ResourceRequirement) bool {
	return h != nil && h.isActive() && h.CanAllocate(req)
}

// maxTotals returns the largest total of each resource among the hosts
// eligible for req.
func maxTotals(hosts []*HostInfo, req ResourceRequirement) ResourceRequirement {
	var scale ResourceRequirement
	for _, h := range hosts {
		// A host that raises no maximum changes nothing, eligible or
		// not. Once the largest totals have been seen, that holds for
		// most hosts, so most hosts skip the eligibility check.
		if h == nil || h.TotalCPU <= scale.CPU &&
			h.TotalMemory <= scale.Memory && h.TotalGPU <= scale.GPU {
			continue
		}
		if !eligible(h, req) {
			continue
		}
		scale.CPU = max(scale.CPU, h.TotalCPU)
		scale.Memory = max(scale.Memory, h.TotalMemory)
		scale.GPU = max(scale.GPU, h.TotalGPU)
	}
	return scale
}

// selectBest returns a copy of the highest-scoring eligible host. It makes
// one pass over hosts, or two when the score needs maxTotals.
func (s scoredSelector) selectBest(
	hosts []*HostInfo, req ResourceRequirement,
) (*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}

	var best *HostInfo
	switch s.kind {
	case scoreLeastUsed:
		best = leastUsedBest(hosts, req)
	case scoreMostFree:
		best = mostFreeBest(hosts, req)
	default:
		best = binPackBest(hosts, req)
	}

	if best == nil {
		return nil, explainNoHost(hosts, req)
	}
	return best.Clone(), nil
}

// rankedHost pairs an eligible host with its score while ranking.
type rankedHost struct {
	host  *HostInfo
	score score
}

// rank returns copies of all eligible hosts, best first, ordered by the
// same score and tie-break as selectBest.
func (s scoredSelector) rank(
	hosts []*HostInfo, req ResourceRequirement,
) ([]*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}

	var factors scoreFactors
	if s.kind == scoreMostFree {
		factors = mostFreeFactors(maxTotals(hosts, req))
	}

	var ranked []rankedHost
	for _, h := range hosts {
		if eligible(h, req) {
			ranked = append(ranked, rankedHost{h, s.kind.score(h, req, factors)})
		}
	}
	if len(ranked) == 0 {
		return nil, explainNoHost(hosts, req)
	}

	slices.SortFunc(ranked, func(a, b rankedHost) int {
		switch {
		case outranks(a.score, a.host, b.score, b.host):
			return -1
		case outranks(b.score, b.host, a.score, a.host):
			return 1
		default:
			return 0
		}
	})

	out := make([]*HostInfo, len(ranked))
	for i, r := range ranked {
		out[i] = r.host.Clone()
	}
	return out, nil
}

// explainNoHost builds the ErrNoHostAvailable error for a request that no
// host fits. The message names the reason: no hosts, no active hosts, or
// each resource that no active host has enough of, with the largest free
// amount seen.
func explainNoHost(hosts []*HostInfo, req ResourceRequirement) error {
	present, active := 0, 0
	var mostFree ResourceRequirement
	for _, h := range hosts {
		if h == nil {
			continue
		}
		present++
		if !h.isActive() {
			continue
		}
		active++
		free := h.AvailableResources()
		mostFree.CPU = max(mostFree.CPU, free.CPU)
		mostFree.Memory = max(mostFree.Memory, free.Memory)
		mostFree.GPU = max(mostFree.GPU, free.GPU)
	}

	switch {
	case present == 0:
		return fmt.Errorf("%w: no hosts", ErrNoHostAvailable)
	case active == 0:
		return fmt.Errorf("%w: no active hosts among %d hosts",
			ErrNoHostAvailable, present)
	}

	var shortfalls []string
	for _, res := range allResources {
		need, most := req.amount(res), mostFree.amount(res)
		if need > most {
			shortfalls = append(shortfalls, fmt.Sprintf(
				"need %s, at most %s free on any active host",
				res.describe(need), res.quantity(most)))
		}
	}
	if len(shortfalls) > 0 {
		return fmt.Errorf("%w: %s", ErrNoHostAvailable,
			strings.Join(shortfalls, "; "))
	}

	// Each resource fits somewhere, but never all of them on one host.
	return fmt.Errorf("%w: no active host has %s free at once (%d active hosts)",
		ErrNoHostAvailable, req, active)
}
