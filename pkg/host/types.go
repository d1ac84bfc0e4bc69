package host

import (
	"fmt"
	"maps"
)

// Host statuses. Only StatusActive makes a host eligible for selection;
// StatusDraining and any other value keep the host registered but exclude
// it from new placements.
const (
	// StatusActive marks a host that may receive new allocations.
	StatusActive = "active"

	// StatusDraining marks a host that keeps its current allocations but
	// receives no new ones.
	StatusDraining = "draining"
)

// Weights of each resource in UsageRate. They add up to 1, so a host with
// every resource fully used has a usage rate of 1.
const (
	cpuWeight    = 0.4
	memoryWeight = 0.4
	gpuWeight    = 0.2
)

// ResourceRequirement is an amount of each resource: what a request needs,
// what a host has free, or what a release gives back.
type ResourceRequirement struct {
	// CPU is a number of whole cores.
	CPU int `json:"cpu"`
	// Memory is a number of bytes.
	Memory int64 `json:"memory"`
	// GPU is a number of whole GPUs.
	GPU int `json:"gpu"`
}

// HostInfo describes one host: its identity, its status, and its
// capacity and usage per resource. CPU is in whole cores, memory in bytes
// and GPU in whole devices.
type HostInfo struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	IPAddress string `json:"ip_address"`
	// Status is StatusActive, StatusDraining or another value. Only
	// StatusActive is eligible for selection.
	Status string `json:"status"`

	TotalCPU    int   `json:"total_cpu"`
	UsedCPU     int   `json:"used_cpu"`
	TotalMemory int64 `json:"total_memory"`
	UsedMemory  int64 `json:"used_memory"`
	TotalGPU    int   `json:"total_gpu"`
	UsedGPU     int   `json:"used_gpu"`

	Labels map[string]string `json:"labels"`
}

// total returns the host's capacity per resource.
func (h *HostInfo) total() ResourceRequirement {
	return ResourceRequirement{
		CPU:    h.TotalCPU,
		Memory: h.TotalMemory,
		GPU:    h.TotalGPU,
	}
}

// used returns the host's usage per resource.
func (h *HostInfo) used() ResourceRequirement {
	return ResourceRequirement{
		CPU:    h.UsedCPU,
		Memory: h.UsedMemory,
		GPU:    h.UsedGPU,
	}
}

// AvailableResources returns total minus used for each resource. A
// resource whose usage exceeds its total reports 0 free, never a negative
// amount.
func (h *HostInfo) AvailableResources() ResourceRequirement {
	return ResourceRequirement{
		CPU:    max(h.TotalCPU-h.UsedCPU, 0),
		Memory: max(h.TotalMemory-h.UsedMemory, 0),
		GPU:    max(h.TotalGPU-h.UsedGPU, 0),
	}
}

// UsageRate returns the weighted share of the host in use, in [0, 1]:
// 0.4 × CPU used/total + 0.4 × memory used/total + 0.2 × GPU used/total.
// Each fraction is clamped to [0, 1], and a resource with a total of 0
// contributes 0, so a host without GPUs peaks at 0.8.
func (h *HostInfo) UsageRate() float64 {
	return usageRate(h.used(), h.total())
}

// usageRate is UsageRate for explicit amounts, so selectors can score a
// host as if a request were already placed on it.
func usageRate(used, total ResourceRequirement) float64 {
	num, den := usageFraction(used, total)
	rate := num / den

	// Rounding in the products may land a hair outside [0, 1]. Plain
	// comparisons, because the float min and max builtins also handle NaN
	// and signed zeros, which cannot occur here: den is at least 1.
	switch {
	case rate < 0:
		return 0
	case rate > 1:
		return 1
	default:
		return rate
	}
}

// usageFraction returns the weighted usage as num/den with den ≥ 1, the
// three per-resource fractions put over a common denominator. Selectors
// compare such fractions by cross-multiplication, which avoids a float
// division per host. A resource with a total of 0 or less gets numerator
// 0 and denominator 1, and usage is clamped to [0, total], so
// 0 ≤ num ≤ den up to rounding.
func usageFraction(used, total ResourceRequirement) (num, den float64) {
	cpu, cpuTotal := clampedShare(int64(used.CPU), int64(total.CPU))
	mem, memTotal := clampedShare(used.Memory, total.Memory)
	gpu, gpuTotal := clampedShare(int64(used.GPU), int64(total.GPU))

	num = cpuWeight*cpu*memTotal*gpuTotal +
		memoryWeight*mem*cpuTotal*gpuTotal +
		gpuWeight*gpu*cpuTotal*memTotal
	den = cpuTotal * memTotal * gpuTotal
	return num, den
}

// clampedShare returns part clamped to [0, whole] and whole, as floats for
// usageFraction. A whole of 0 or less yields (0, 1), so the resource adds
// nothing and does not zero the common denominator.
func clampedShare(part, whole int64) (float64, float64) {
	if whole <= 0 {
		return 0, 1
	}
	part = min(max(part, 0), whole)
	return float64(part), float64(whole)
}

// CanAllocate reports whether every field of req fits in the host's free
// resources. It ignores the host's status, and it returns false for a
// requirement with a negative field.
func (h *HostInfo) CanAllocate(req ResourceRequirement) bool {
	if req.CPU < 0 || req.Memory < 0 || req.GPU < 0 {
		return false
	}
	// Compare against total-used, not used+req, so a huge request cannot
	// overflow.
	return req.CPU <= h.TotalCPU-h.UsedCPU &&
		req.Memory <= h.TotalMemory-h.UsedMemory &&
		req.GPU <= h.TotalGPU-h.UsedGPU
}

// isActive reports whether the host's status makes it eligible.
func (h *HostInfo) isActive() bool {
	return h.Status == StatusActive
}

// Clone returns a deep copy of the host, including its Labels map, or nil
// for a nil host. A nil Labels map stays nil.
func (h *HostInfo) Clone() *HostInfo {
	if h == nil {
		return nil
	}
	c := *h
	c.Labels = maps.Clone(h.Labels)
	return &c
}

// Validate returns an error wrapping ErrInvalidHost when the host is nil,
// has an empty ID, has a negative total or used amount, or uses more of a
// resource than its total. The message names the host and the field.
func (h *HostInfo) Validate() error {
	if h == nil {
		return fmt.Errorf("%w: host is nil", ErrInvalidHost)
	}
	if h.ID == "" {
		return fmt.Errorf("%w: id is empty", ErrInvalidHost)
	}

	used, total := h.used(), h.total()
	for _, res := range allResources {
		u, t := used.amount(res), total.amount(res)
		switch {
		case t < 0:
			return fmt.Errorf("%w: host %q: total_%s is %d, must not be negative",
				ErrInvalidHost, h.ID, res.field(), t)
		case u < 0:
			return fmt.Errorf("%w: host %q: used_%s is %d, must not be negative",
				ErrInvalidHost, h.ID, res.field(), u)
		case u > t:
			return fmt.Errorf("%w: host %q: used_%s %d exceeds total_%s %d",
				ErrInvalidHost, h.ID, res.field(), u, res.field(), t)
		}
	}
	return nil
}
