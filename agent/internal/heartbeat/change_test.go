package heartbeat

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func u32(v uint32) *uint32 { return &v }
func i64(v int64) *int64   { return &v }

func TestChangeDetector(t *testing.T) {
	t.Parallel()
	info := keyspace.HostInfo{
		TotalMemory: 100 << 30,
		GPUs:        []keyspace.GPUInfo{{UUID: "GPU-a", MemoryTotal: 40 << 30}},
	}
	c := newChangeDetector(5, info)
	base := func() keyspace.HostStatus {
		return keyspace.HostStatus{
			CPUPercent: 20,
			UsedMemory: 50 << 30,
			GPUs: []keyspace.GPUStatus{{
				UUID: "GPU-a", Health: keyspace.GPUHealthy,
				UtilizationGPUPercent: u32(10),
				MemoryUsed:            i64(10 << 30),
			}},
		}
	}

	tests := []struct {
		name   string
		mutate func(*keyspace.HostStatus)
		want   string
	}{
		{"unchanged", func(*keyspace.HostStatus) {}, ""},
		{"cpu below threshold", func(s *keyspace.HostStatus) { s.CPUPercent = 24 }, ""},
		{"cpu at threshold", func(s *keyspace.HostStatus) { s.CPUPercent = 25 }, WriteCPU},
		{"cpu drop", func(s *keyspace.HostStatus) { s.CPUPercent = 2 }, WriteCPU},
		{"memory 4 percent", func(s *keyspace.HostStatus) { s.UsedMemory += 4 << 30 }, ""},
		{"memory 6 percent", func(s *keyspace.HostStatus) { s.UsedMemory -= 6 << 30 }, WriteMemory},
		{"gpu gone", func(s *keyspace.HostStatus) { s.GPUs = nil }, WriteGPUSet},
		{"gpu replaced", func(s *keyspace.HostStatus) { s.GPUs[0].UUID = "GPU-b" }, WriteGPUSet},
		{"gpu unhealthy", func(s *keyspace.HostStatus) {
			s.GPUs[0].Health = keyspace.GPUUnhealthy
		}, WriteGPUHealth},
		{"gpu reason changed", func(s *keyspace.HostStatus) {
			s.GPUs[0].HealthReason = "critical XID 79"
		}, WriteGPUHealth},
		{"gpu util small", func(s *keyspace.HostStatus) {
			s.GPUs[0].UtilizationGPUPercent = u32(14)
		}, ""},
		{"gpu util big", func(s *keyspace.HostStatus) {
			s.GPUs[0].UtilizationGPUPercent = u32(90)
		}, WriteGPUUse},
		{"gpu util disappears", func(s *keyspace.HostStatus) {
			s.GPUs[0].UtilizationGPUPercent = nil
		}, WriteGPUUse},
		{"gpu memory 2.5 percent", func(s *keyspace.HostStatus) {
			s.GPUs[0].MemoryUsed = i64(11 << 30)
		}, ""},
		{"gpu memory 10 percent", func(s *keyspace.HostStatus) {
			s.GPUs[0].MemoryUsed = i64(14 << 30)
		}, WriteGPUUse},
		{"gpu memory disappears", func(s *keyspace.HostStatus) {
			s.GPUs[0].MemoryUsed = nil
		}, WriteGPUUse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, cur := base(), base()
			tt.mutate(&cur)
			assert.Equal(t, tt.want, c.changed(&prev, &cur))
		})
	}
}

func TestChangeWithoutKnownTotals(t *testing.T) {
	t.Parallel()
	c := newChangeDetector(5, keyspace.HostInfo{})
	prev := keyspace.HostStatus{UsedMemory: 1}
	cur := keyspace.HostStatus{UsedMemory: 2}
	assert.Equal(t, WriteMemory, c.changed(&prev, &cur))
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		random  float64
		ttl     time.Duration
		attempt int
		wantDur time.Duration
	}{
		{"first retry, no jitter", 0, 10 * time.Second, 0, 100 * time.Millisecond},
		{"first retry, full jitter", 0.999999, 10 * time.Second, 0, 200 * time.Millisecond},
		{"doubles", 0, 10 * time.Second, 3, 800 * time.Millisecond},
		{"capped at 5 s", 0, 10 * time.Second, 10, 2500 * time.Millisecond},
		{"capped at the TTL", 0, 2 * time.Second, 10, time.Second},
		{"huge attempt", 0, 10 * time.Second, 1000, 2500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff(tt.ttl, func() float64 { return tt.random })
			assert.InDelta(t, float64(tt.wantDur), float64(b.delay(tt.attempt)),
				float64(time.Millisecond))
		})
	}
}

func TestBackoffJitterStaysInRange(t *testing.T) {
	t.Parallel()
	b := newBackoff(10*time.Second, nil)
	for attempt := range 20 {
		d := b.delay(attempt)
		capped := min(RetryBase<<min(attempt, 20), MaxRetryBackoff)
		assert.GreaterOrEqual(t, d, capped/2)
		assert.LessOrEqual(t, d, capped)
	}
}
