package collect

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// procCPUCount counts the "processor" lines of /proc/cpuinfo.
func procCPUCount(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/cpuinfo")
	require.NoError(t, err)
	n := 0
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "processor") {
			n++
		}
	}
	return n
}

// procMemTotal returns MemTotal of /proc/meminfo in bytes.
func procMemTotal(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			require.NoError(t, err)
			return kb * 1024
		}
	}
	t.Fatal("MemTotal missing from /proc/meminfo")
	return 0
}

// noCgroup points the collector at empty cgroup files, so the host's own
// values are reported whatever cgroup the test runs in.
func noCgroup(t *testing.T) Options {
	dir := t.TempDir()
	return Options{CgroupRoot: dir, SelfCgroup: filepath.Join(dir, "missing")}
}

func TestCapacityMatchesProc(t *testing.T) {
	t.Parallel()
	c, err := New(context.Background(), noCgroup(t))
	require.NoError(t, err)

	capacity := c.Capacity()
	assert.Equal(t, procCPUCount(t), capacity.HostCPUs)
	assert.Equal(t, capacity.HostCPUs, capacity.CPUs)
	assert.Equal(t, procMemTotal(t), capacity.HostMemoryBytes)
	assert.Equal(t, capacity.HostMemoryBytes, capacity.MemoryBytes)
	assert.False(t, capacity.CPULimited())
	assert.False(t, capacity.MemoryLimited())
}

func TestSampleIsConsistent(t *testing.T) {
	t.Parallel()
	c, err := New(context.Background(), noCgroup(t))
	require.NoError(t, err)

	s, err := c.Sample(context.Background())
	require.NoError(t, err)
	assert.Equal(t, procMemTotal(t), s.MemoryTotal)
	assert.Equal(t, s.MemoryTotal, s.MemoryUsed+s.MemoryAvailable)
	assert.Positive(t, s.MemoryAvailable)
	assert.Positive(t, s.MemoryUsed)
	assert.GreaterOrEqual(t, s.CPUPercent, 0.0)
	assert.LessOrEqual(t, s.CPUPercent, 100.0)
	assert.GreaterOrEqual(t, s.Load1, 0.0)
}

func TestFirstSampleMeasuresSinceNew(t *testing.T) {
	t.Parallel()
	c, err := New(context.Background(), noCgroup(t))
	require.NoError(t, err)

	// Keep one CPU busy; the first sample must see it instead of the zero
	// that a first zero-interval cpu.Percent call returns.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	s, err := c.Sample(context.Background())
	require.NoError(t, err)
	assert.Greater(t, s.CPUPercent, 0.0)
}

func TestBusyPercent(t *testing.T) {
	t.Parallel()
	prev := cpu.TimesStat{User: 100, System: 50, Idle: 800, Iowait: 50}
	tests := []struct {
		name string
		now  cpu.TimesStat
		want float64
	}{
		{"half busy", cpu.TimesStat{User: 150, System: 100, Idle: 900, Iowait: 50}, 50},
		{"iowait is idle", cpu.TimesStat{User: 100, System: 50, Idle: 800, Iowait: 150}, 0},
		{"all busy", cpu.TimesStat{User: 200, System: 50, Idle: 800, Iowait: 50}, 100},
		{"no time passed", prev, 0},
		{"counter went back", cpu.TimesStat{User: 1, Idle: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, busyPercent(prev, tt.now), 1e-9)
		})
	}
}

// fakeCgroup writes files under a temporary cgroup root and a matching
// /proc/self/cgroup.
type fakeCgroup struct {
	t    *testing.T
	root string
	self string
}

func newFakeCgroup(t *testing.T, selfContent string) *fakeCgroup {
	dir := t.TempDir()
	f := &fakeCgroup{t: t, root: filepath.Join(dir, "cgroup"),
		self: filepath.Join(dir, "self-cgroup")}
	require.NoError(t, os.MkdirAll(f.root, 0o755))
	require.NoError(t, os.WriteFile(f.self, []byte(selfContent), 0o644))
	return f
}

func (f *fakeCgroup) write(rel, content string) {
	path := filepath.Join(f.root, rel)
	require.NoError(f.t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(f.t, os.WriteFile(path, []byte(content), 0o644))
}

func TestCgroupV2Limits(t *testing.T) {
	t.Parallel()
	f := newFakeCgroup(t, "0::/kubepods/pod1/ctr\n")
	f.write("cgroup.controllers", "cpu memory\n")
	f.write("cpu.max", "max 100000\n")
	f.write("memory.max", "max\n")
	f.write("kubepods/cpu.max", "400000 100000\n")
	f.write("kubepods/memory.max", "8589934592\n")
	f.write("kubepods/pod1/cpu.max", "150000 100000\n")
	f.write("kubepods/pod1/memory.max", "max\n")
	f.write("kubepods/pod1/ctr/cpu.max", "max 100000\n")

	lim, err := ReadCgroupLimits(f.root, f.self)
	require.NoError(t, err)
	assert.Equal(t, "v2", lim.Version)
	assert.InDelta(t, 1.5, lim.CPU, 1e-9, "tightest quota on the path")
	assert.Equal(t, int64(8<<30), lim.Memory)
	assert.Equal(t, filepath.Join(f.root, "kubepods/memory.max"), lim.MemoryFile)
}

func TestCgroupV1Limits(t *testing.T) {
	t.Parallel()
	f := newFakeCgroup(t,
		"4:memory:/job\n3:cpu,cpuacct:/job\n1:name=systemd:/job\n")
	f.write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
	f.write("cpu,cpuacct/cpu.cfs_period_us", "100000\n")
	f.write("cpu,cpuacct/job/cpu.cfs_quota_us", "250000\n")
	f.write("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n")
	f.write("memory/memory.limit_in_bytes", "9223372036854771712\n")
	f.write("memory/job/memory.limit_in_bytes", "2147483648\n")

	lim, err := ReadCgroupLimits(f.root, f.self)
	require.NoError(t, err)
	assert.Equal(t, "v1", lim.Version)
	assert.InDelta(t, 2.5, lim.CPU, 1e-9)
	assert.Equal(t, int64(2<<30), lim.Memory)
}

func TestCgroupWithoutLimits(t *testing.T) {
	t.Parallel()
	f := newFakeCgroup(t, "0::/\n")
	f.write("cgroup.controllers", "cpu memory\n")
	f.write("cpu.max", "max 100000\n")
	f.write("memory.max", "max\n")

	lim, err := ReadCgroupLimits(f.root, f.self)
	require.NoError(t, err)
	assert.Zero(t, lim.CPU)
	assert.Zero(t, lim.Memory)

	lim, err = ReadCgroupLimits(f.root, filepath.Join(f.root, "absent"))
	require.NoError(t, err, "no /proc/self/cgroup means no limits")
	assert.Zero(t, lim.Memory)
}

func TestCgroupPathMissingInContainer(t *testing.T) {
	t.Parallel()
	// Without a cgroup namespace the listed path does not exist under the
	// container's own mount; the mount's files hold the limits.
	f := newFakeCgroup(t, "0::/system.slice/docker-abc.scope\n")
	f.write("cgroup.controllers", "cpu memory\n")
	f.write("memory.max", "1073741824\n")

	lim, err := ReadCgroupLimits(f.root, f.self)
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), lim.Memory)
}

func TestCgroupInvalidContent(t *testing.T) {
	t.Parallel()
	f := newFakeCgroup(t, "0::/\n")
	f.write("cgroup.controllers", "cpu memory\n")
	f.write("memory.max", "lots\n")

	_, err := ReadCgroupLimits(f.root, f.self)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid cgroup memory limit "lots"`)
	assert.Contains(t, err.Error(), filepath.Join(f.root, "memory.max"))
}

func TestCgroupLimitsLowerCapacity(t *testing.T) {
	t.Parallel()
	f := newFakeCgroup(t, "0::/\n")
	f.write("cgroup.controllers", "cpu memory\n")
	f.write("cpu.max", "50000 100000\n")
	f.write("memory.max", "1073741824\n")
	f.write("memory.current", "536870912\n")
	f.write("memory.stat", "anon 400000000\ninactive_file 134217728\n")

	c, err := New(context.Background(), Options{CgroupRoot: f.root, SelfCgroup: f.self})
	require.NoError(t, err)
	capacity := c.Capacity()
	assert.Equal(t, 1, capacity.CPUs, "half a core rounds to at least one")
	assert.Equal(t, int64(1<<30), capacity.MemoryBytes)
	assert.True(t, capacity.MemoryLimited())
	if capacity.HostCPUs > 1 {
		assert.True(t, capacity.CPULimited())
	}

	s, err := c.Sample(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), s.MemoryTotal)
	// Headroom: limit 1 GiB minus usage 512 MiB plus 128 MiB inactive cache.
	assert.Equal(t, int64(640<<20), s.MemoryAvailable)
	assert.Equal(t, int64(384<<20), s.MemoryUsed)
}
