package host

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// benchSizes are the fleet sizes every selector is measured on.
var benchSizes = []int{1_000, 10_000, 100_000}

// benchHosts returns n active hosts of a few sizes with pseudo-random
// usage; a fixed seed keeps runs comparable.
func benchHosts(n int) []*HostInfo {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := []ResourceRequirement{
		res(32, 128, 4), res(64, 256, 8), res(96, 512, 8),
	}
	hosts := make([]*HostInfo, n)
	for i := range hosts {
		total := shapes[i%len(shapes)]
		used := ResourceRequirement{
			CPU:    rng.IntN(total.CPU + 1),
			Memory: rng.Int64N(total.Memory + 1),
			GPU:    rng.IntN(total.GPU + 1),
		}
		hosts[i] = newHost(fmt.Sprintf("host-%06d", i), total, used)
	}
	return hosts
}

// BenchmarkSelect measures Select for every selector and fleet size. It
// reports the 99th percentile of single calls as p99-ns besides the mean.
func BenchmarkSelect(b *testing.B) {
	req := res(4, 16, 1)
	for _, size := range benchSizes {
		hosts := benchHosts(size)
		for _, s := range allSelectors() {
			name := fmt.Sprintf("%s/hosts=%d", s.name, size)
			b.Run(name, func(b *testing.B) {
				benchmarkSelect(b, s.make(), hosts, req)
			})
		}
	}
}

func benchmarkSelect(
	b *testing.B, sel HostSelector, hosts []*HostInfo, req ResourceRequirement,
) {
	durations := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()

	for i := range b.N {
		start := time.Now()
		if _, err := sel.Select(hosts, req); err != nil {
			b.Fatal(err)
		}
		durations[i] = time.Since(start)
	}

	b.StopTimer()
	slices.Sort(durations)
	p99 := durations[(len(durations)*99)/100]
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
}

// BenchmarkManagerAllocate measures Allocate followed by Release on a
// manager with 10,000 hosts, the path a coordinator takes per request.
func BenchmarkManagerAllocate(b *testing.B) {
	m := NewHostManager(nil, nil)
	for _, h := range benchHosts(10_000) {
		if err := m.RegisterHost(h); err != nil {
			b.Fatal(err)
		}
	}
	req := res(4, 16, 1)
	b.ReportAllocs()
	b.ResetTimer()

	for range b.N {
		h, err := m.Allocate(req)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Release(h.ID, req); err != nil {
			b.Fatal(err)
		}
	}
}
