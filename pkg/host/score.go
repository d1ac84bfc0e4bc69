package host

// scoreKind names the scoring strategy of a scoredSelector. The scan
// switches on it instead of calling a function value, so each host costs
// a direct call. The branch goes the same way for every host, so the CPU
// predicts it.
type scoreKind int

const (
	// scoreLeastUsed scores 1 − UsageRate.
	scoreLeastUsed scoreKind = iota
	// scoreMostFree scores the weighted free amounts, see mostFreeScore.
	scoreMostFree
	// scoreBinPack scores the UsageRate after placing the request.
	scoreBinPack
)

// score is a host's score as the fraction num/den with den > 0; higher is
// better. Keeping the fraction lets the scan compare scores by
// cross-multiplication instead of dividing once per host.
type score struct {
	num, den float64
}

// compare returns +1 when a is greater than b, -1 when it is less and 0
// when they are equal. Hosts with identical amounts get bit-identical
// products, so they tie exactly and the ID decides.
func (a score) compare(b score) int {
	left, right := a.num*b.den, b.num*a.den
	switch {
	case left > right:
		return 1
	case left < right:
		return -1
	default:
		return 0
	}
}

// scoreFactors holds per-resource multipliers computed once per Select or
// Rank call from all eligible hosts; only scoreMostFree uses them.
type scoreFactors struct {
	cpu, memory, gpu float64
}

// score returns h's score for req under strategy k.
func (k scoreKind) score(
	h *HostInfo, req ResourceRequirement, factors scoreFactors,
) score {
	switch k {
	case scoreLeastUsed:
		num, den := usageFraction(h.used(), h.total())
		return score{num: den - num, den: den}
	case scoreMostFree:
		return score{num: mostFreeScore(h, factors), den: 1}
	default:
		used := h.used()
		used.CPU += req.CPU
		used.Memory += req.Memory
		used.GPU += req.GPU
		num, den := usageFraction(used, h.total())
		return score{num: num, den: den}
	}
}

// mostFreeScore weights the host's free amounts by the factors from
// mostFreeFactors. The score before and after placing the request orders
// hosts the same way, because the request is the same for every host, so
// it uses the amounts before placement.
func mostFreeScore(h *HostInfo, factors scoreFactors) float64 {
	free := h.AvailableResources()
	return factors.cpu*float64(free.CPU) +
		factors.memory*float64(free.Memory) +
		factors.gpu*float64(free.GPU)
}

// mostFreeFactors turns the largest eligible totals into weight/total
// factors, so that scoring a host multiplies instead of divides. A
// resource whose largest total is 0 gets factor 0.
func mostFreeFactors(largest ResourceRequirement) scoreFactors {
	return scoreFactors{
		cpu:    weightPer(cpuWeight, int64(largest.CPU)),
		memory: weightPer(memoryWeight, largest.Memory),
		gpu:    weightPer(gpuWeight, int64(largest.GPU)),
	}
}

// weightPer returns weight/total, or 0 when total is 0 or less.
func weightPer(weight float64, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return weight / float64(total)
}

// outranks reports whether host h with score sc ranks before bestHost
// with score best. Equal scores go to the lower ID, so the result does not
// depend on the order of the input slice. It reads the IDs only for equal
// scores, which keeps the scans from loading them for every host.
func outranks(sc score, h *HostInfo, best score, bestHost *HostInfo) bool {
	if c := sc.compare(best); c != 0 {
		return c > 0
	}
	return h.ID < bestHost.ID
}
