package heartbeat

import (
	"math"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Reasons for a status write, passed to Observer.StatusWritten.
const (
	WriteRegistered  = "registered"
	WriteMaxInterval = "max interval"
	WriteCPU         = "cpu"
	WriteMemory      = "memory"
	WriteGPUSet      = "gpu set"
	WriteGPUHealth   = "gpu health"
	WriteGPUUse      = "gpu use"
)

// changeDetector decides whether a new status differs enough from the last
// written one to be written before the maximum interval has passed.
type changeDetector struct {
	// threshold is in percentage points.
	threshold float64
	// memoryTotal is the host's memory in bytes; gpuMemory maps a GPU UUID
	// to its memory in bytes. They turn byte changes into percentages.
	memoryTotal int64
	gpuMemory   map[string]int64
}

func newChangeDetector(threshold float64, info keyspace.HostInfo) changeDetector {
	gpuMemory := make(map[string]int64, len(info.GPUs))
	for _, g := range info.GPUs {
		gpuMemory[g.UUID] = g.MemoryTotal
	}
	return changeDetector{
		threshold: threshold, memoryTotal: info.TotalMemory,
		gpuMemory: gpuMemory,
	}
}

// changed returns why cur must be written given the last written status
// prev, or "" when the difference is within the threshold.
func (c changeDetector) changed(prev, cur *keyspace.HostStatus) string {
	if c.exceeds(prev.CPUPercent, cur.CPUPercent) {
		return WriteCPU
	}
	if c.exceedsShare(prev.UsedMemory, cur.UsedMemory, c.memoryTotal) {
		return WriteMemory
	}
	if len(prev.GPUs) != len(cur.GPUs) {
		return WriteGPUSet
	}
	for i := range cur.GPUs {
		if reason := c.gpuChanged(&prev.GPUs[i], &cur.GPUs[i]); reason != "" {
			return reason
		}
	}
	return ""
}

func (c changeDetector) gpuChanged(prev, cur *keyspace.GPUStatus) string {
	switch {
	case prev.UUID != cur.UUID:
		return WriteGPUSet
	case prev.Health != cur.Health || prev.HealthReason != cur.HealthReason:
		return WriteGPUHealth
	case c.exceedsPtr(prev.UtilizationGPUPercent, cur.UtilizationGPUPercent),
		c.exceedsPtr(prev.UtilizationMemoryPercent, cur.UtilizationMemoryPercent):
		return WriteGPUUse
	}
	if (prev.MemoryUsed == nil) != (cur.MemoryUsed == nil) {
		return WriteGPUUse
	}
	if cur.MemoryUsed != nil && c.exceedsShare(*prev.MemoryUsed,
		*cur.MemoryUsed, c.gpuMemory[cur.UUID]) {
		return WriteGPUUse
	}
	return ""
}

func (c changeDetector) exceeds(prev, cur float64) bool {
	return math.Abs(cur-prev) >= c.threshold
}

// exceedsShare compares two byte counts as percentages of total. Without a
// known total any change counts.
func (c changeDetector) exceedsShare(prev, cur, total int64) bool {
	if total <= 0 {
		return prev != cur
	}
	return c.exceeds(float64(prev)/float64(total)*100,
		float64(cur)/float64(total)*100)
}

// exceedsPtr compares two optional percentages; a field that appears or
// disappears counts as a change.
func (c changeDetector) exceedsPtr(prev, cur *uint32) bool {
	if prev == nil || cur == nil {
		return (prev == nil) != (cur == nil)
	}
	return c.exceeds(float64(*prev), float64(*cur))
}
