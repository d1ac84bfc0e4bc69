package host

import "math"

// The scans below return the same host as the plain rule: among the
// eligible hosts, in input order, keep the one that outranks the current
// best. They are faster in two ways that do not change the pick.
//
// First, a host is scored before its eligibility is checked, and checked
// only if it would outrank the current best. Scoring has no side effects,
// and most hosts lose the comparison, so most hosts skip the status and
// fit checks.
//
// Second, a scan skips scoring a host when its CPU or memory term alone
// proves that it ranks behind the current best. A usage rate is
// 0.4 × CPU share + 0.4 × memory share + 0.2 × GPU share, each share in
// [0, 1], so the CPU share s bounds it:
//
//	0.4 × s ≤ rate ≤ 0.4 × s + 0.4 + 0.2
//
// The memory share gives the same bounds, and mostFreeBest uses the
// same idea for free amounts. Scoring and comparing one host takes six
// integer to float conversions and thirteen multiplications, and one
// bound test takes two conversions and one multiplication.

// pruneMargin is how far a host's bound must pass the best host's score
// before a scan skips the host without scoring it. Every bound, score
// and comparison below is computed in float64 with fewer than 50
// roundings of at most 2^-53 relative error, on values of at most about
// 1, so the combined error stays below 1e-14. With 1e-9 a skipped host
// ranks behind the best by a wide margin, and score.compare would never
// have chosen it, even as a tie.
const pruneMargin = 1e-9

// shareAbove reports whether used/total, with used clamped to total, is
// greater than limit. It is false when total is 0 or less, because such a
// resource adds nothing to the usage rate.
func shareAbove(used, total int64, limit float64) bool {
	return total > 0 && float64(min(used, total)) > limit*float64(total)
}

// shareBelow reports whether used/total, with used clamped to [0, total],
// is less than limit. It is false when total is 0 or less.
func shareBelow(used, total int64, limit float64) bool {
	return total > 0 &&
		float64(min(max(used, 0), total)) < limit*float64(total)
}

// leastUsedBest returns the eligible host with the lowest UsageRate, or
// nil when no host is eligible.
func leastUsedBest(hosts []*HostInfo, req ResourceRequirement) *HostInfo {
	var best *HostInfo
	var bestScore score

	// A host whose CPU share exceeds cpuLimit, or whose memory share
	// exceeds memoryLimit, is used more than the best host. The limits
	// stay +Inf, which skips nothing, until there is a best host.
	cpuLimit, memoryLimit := math.Inf(1), math.Inf(1)

	for _, h := range hosts {
		if h == nil ||
			shareAbove(int64(h.UsedCPU), int64(h.TotalCPU), cpuLimit) ||
			shareAbove(h.UsedMemory, h.TotalMemory, memoryLimit) {
			continue
		}

		sc := scoreLeastUsed.score(h, req, scoreFactors{})
		if best != nil && !outranks(sc, h, bestScore, best) {
			continue
		}
		if !eligible(h, req) {
			continue
		}
		best, bestScore = h, sc

		// The score is 1 − rate as a fraction.
		rate := 1 - sc.num/sc.den + pruneMargin
		cpuLimit = rate / cpuWeight
		memoryLimit = rate / memoryWeight
	}
	return best
}

// binPackBest returns the eligible host with the highest UsageRate after
// placing req, or nil when no host is eligible.
func binPackBest(hosts []*HostInfo, req ResourceRequirement) *HostInfo {
	var best *HostInfo
	var bestScore score

	// A host whose CPU share after placement is below cpuFloor, or whose
	// memory share is below memoryFloor, ends up less used than the best
	// host would. The floors stay −Inf, which skips nothing, until there
	// is a best host.
	cpuFloor, memoryFloor := math.Inf(-1), math.Inf(-1)

	for _, h := range hosts {
		if h == nil ||
			shareBelow(int64(h.UsedCPU+req.CPU), int64(h.TotalCPU), cpuFloor) ||
			shareBelow(h.UsedMemory+req.Memory, h.TotalMemory, memoryFloor) {
			continue
		}

		sc := scoreBinPack.score(h, req, scoreFactors{})
		if best != nil && !outranks(sc, h, bestScore, best) {
			continue
		}
		if !eligible(h, req) {
			continue
		}
		best, bestScore = h, sc

		// Even with both other resources full, a host needs this share
		// of one resource to reach the best host's rate.
		rate := sc.num/sc.den - pruneMargin
		cpuFloor = (rate - memoryWeight - gpuWeight) / cpuWeight
		memoryFloor = (rate - cpuWeight - gpuWeight) / memoryWeight
	}
	return best
}

// mostFreeBest returns the eligible host with the most free resources, or
// nil when no host is eligible.
func mostFreeBest(hosts []*HostInfo, req ResourceRequirement) *HostInfo {
	factors := mostFreeFactors(maxTotals(hosts, req))

	var best *HostInfo
	var bestScore score

	// A host whose weighted free CPU is below cpuFloor, or whose weighted
	// free memory is below memoryFloor, has less free than the best host,
	// even with the full weight for the other two resources. Such a host
	// scores at most about 1, so if the best host scores far above 1 it
	// wins by far more than pruneMargin. The floors stay −Inf, which
	// skips nothing, until there is a best host.
	cpuFloor, memoryFloor := math.Inf(-1), math.Inf(-1)

	for _, h := range hosts {
		if h == nil {
			continue
		}
		if freeBoundedByWeight(h) &&
			(factors.cpu*float64(max(h.TotalCPU-h.UsedCPU, 0)) < cpuFloor ||
				factors.memory*float64(max(h.TotalMemory-h.UsedMemory, 0)) < memoryFloor) {
			continue
		}

		sc := score{num: mostFreeScore(h, factors), den: 1}
		if best != nil && !outranks(sc, h, bestScore, best) {
			continue
		}
		if !eligible(h, req) {
			continue
		}
		best, bestScore = h, sc
		cpuFloor = sc.num - memoryWeight - gpuWeight - pruneMargin
		memoryFloor = sc.num - cpuWeight - gpuWeight - pruneMargin
	}
	return best
}

// freeBoundedByWeight reports whether each of h's weighted free amounts in
// mostFreeScore is at most its weight, when h is eligible. An eligible
// host has no total above the largest eligible total, so that holds
// unless a negative used amount makes free exceed the total. A host that
// is not eligible may break the bound, but a scan that skips it loses
// nothing.
func freeBoundedByWeight(h *HostInfo) bool {
	return h.UsedCPU >= 0 && h.UsedMemory >= 0 && h.UsedGPU >= 0
}
