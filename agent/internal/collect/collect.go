package collect

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
)

// Options locates the cgroup files; the zero value uses the defaults.
type Options struct {
	// CgroupRoot is the mount point of the cgroup file system.
	CgroupRoot string
	// SelfCgroup lists the process's cgroups, as /proc/self/cgroup does.
	SelfCgroup string
}

// Capacity is the CPU and memory the host offers, read once at start.
type Capacity struct {
	// CPUs and MemoryBytes are offered to allocations: the host's values,
	// lowered to the cgroup limits when those are smaller.
	CPUs        int
	MemoryBytes int64
	// HostCPUs and HostMemoryBytes are the host's own values.
	HostCPUs        int
	HostMemoryBytes int64
	// Cgroup holds the limits found; zero fields mean none.
	Cgroup CgroupLimits
}

// CPULimited reports whether a cgroup CPU quota lowered the CPU count.
func (c Capacity) CPULimited() bool { return c.CPUs < c.HostCPUs }

// MemoryLimited reports whether a cgroup memory limit lowered the total.
func (c Capacity) MemoryLimited() bool {
	return c.MemoryBytes < c.HostMemoryBytes
}

// Sample is one reading of the host's load. Memory is in bytes.
type Sample struct {
	CPUPercent      float64
	MemoryTotal     int64
	MemoryUsed      int64
	MemoryAvailable int64
	Load1           float64
	Load5           float64
	Load15          float64
}

// Collector reads CPU and memory. It is safe for concurrent use.
type Collector struct {
	capacity Capacity

	// mu guards prevTimes.
	mu        sync.Mutex
	prevTimes cpu.TimesStat
}

// New reads the host's capacity and cgroup limits and takes the first CPU
// time reading, so the first Sample reports real utilisation.
func New(ctx context.Context, opts Options) (*Collector, error) {
	if opts.CgroupRoot == "" {
		opts.CgroupRoot = DefaultCgroupRoot
	}
	if opts.SelfCgroup == "" {
		opts.SelfCgroup = DefaultSelfCgroup
	}

	capacity, err := readCapacity(ctx, opts)
	if err != nil {
		return nil, err
	}
	times, err := totalCPUTimes(ctx)
	if err != nil {
		return nil, err
	}
	return &Collector{capacity: capacity, prevTimes: times}, nil
}

func readCapacity(ctx context.Context, opts Options) (Capacity, error) {
	cpus, err := cpu.CountsWithContext(ctx, true)
	if err != nil || cpus <= 0 {
		// gopsutil reads /proc/cpuinfo, and the Go runtime reads the
		// scheduler affinity mask instead.
		cpus = runtime.NumCPU()
	}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return Capacity{}, fmt.Errorf("read host memory: %w", err)
	}
	limits, err := ReadCgroupLimits(opts.CgroupRoot, opts.SelfCgroup)
	if err != nil {
		return Capacity{}, err
	}

	c := Capacity{
		CPUs:            cpus,
		MemoryBytes:     int64(vm.Total),
		HostCPUs:        cpus,
		HostMemoryBytes: int64(vm.Total),
		Cgroup:          limits,
	}
	if limits.CPU > 0 && limits.CPU < float64(cpus) {
		// A fractional quota is rounded down: offering 2 cores on a 1.5
		// core quota would overcommit.
		c.CPUs = max(1, int(math.Floor(limits.CPU)))
	}
	if limits.Memory > 0 && limits.Memory < c.MemoryBytes {
		c.MemoryBytes = limits.Memory
	}
	return c, nil
}

// Capacity returns the capacity read by New.
func (c *Collector) Capacity() Capacity { return c.capacity }

// Sample reads CPU utilisation since the previous Sample (or New), memory
// and load averages. A failed load average read is not an error; the load
// fields are then zero.
func (c *Collector) Sample(ctx context.Context) (Sample, error) {
	percent, err := c.cpuPercent(ctx)
	if err != nil {
		return Sample{}, err
	}
	total, available, err := c.memory(ctx)
	if err != nil {
		return Sample{}, err
	}

	s := Sample{
		CPUPercent:      percent,
		MemoryTotal:     total,
		MemoryUsed:      total - available,
		MemoryAvailable: available,
	}
	if avg, err := load.AvgWithContext(ctx); err == nil {
		s.Load1, s.Load5, s.Load15 = avg.Load1, avg.Load5, avg.Load15
	}
	return s, nil
}

func (c *Collector) cpuPercent(ctx context.Context) (float64, error) {
	now, err := totalCPUTimes(ctx)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	percent := busyPercent(c.prevTimes, now)
	c.prevTimes = now
	return percent, nil
}

func (c *Collector) memory(ctx context.Context) (total, available int64, err error) {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read host memory: %w", err)
	}
	total = c.capacity.MemoryBytes
	available = min(int64(vm.Available), total)
	if c.capacity.MemoryLimited() {
		headroom, err := c.capacity.Cgroup.memoryHeadroom()
		if err != nil {
			return 0, 0, err
		}
		available = min(available, headroom)
	}
	return total, available, nil
}

func totalCPUTimes(ctx context.Context) (cpu.TimesStat, error) {
	times, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return cpu.TimesStat{}, fmt.Errorf("read CPU times: %w", err)
	}
	if len(times) == 0 {
		return cpu.TimesStat{}, fmt.Errorf("read CPU times: no data")
	}
	return times[0], nil
}

// busyPercent returns the share of CPU time spent busy between two
// readings, in percent. Guest time is already counted in user time on
// Linux, and idle and iowait count as not busy.
func busyPercent(prev, now cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		return t.User + t.System + t.Idle + t.Nice + t.Iowait +
			t.Irq + t.Softirq + t.Steal
	}
	idle := func(t cpu.TimesStat) float64 { return t.Idle + t.Iowait }

	dTotal := total(now) - total(prev)
	dBusy := dTotal - (idle(now) - idle(prev))
	if dTotal <= 0 || dBusy <= 0 {
		return 0
	}
	return math.Min(100, dBusy/dTotal*100)
}
