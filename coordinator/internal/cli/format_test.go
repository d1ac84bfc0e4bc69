package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestHostTable(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seen := now.Add(-7 * time.Second)
	old := now.Add(-3 * time.Hour)
	hosts := []api.Host{
		{
			ID: "gpu-1", IPAddress: "10.0.0.1", Health: api.HealthHealthy, Status: "active",
			UsedCPU: 4, TotalCPU: 32, UsedMemory: 16 << 30, TotalMemory: 256 << 30,
			TotalGPU: 4, UsedGPU: 1, LastHeartbeat: &seen,
			GPUs: []api.GPU{
				{UUID: "a", Health: "healthy", AllocationID: "alloc-1"},
				{UUID: "b", Health: "healthy", Busy: true},
				{UUID: "c", Health: "unhealthy"},
				{UUID: "d", Health: "healthy"},
			},
		},
		{
			ID: "cpu-only", Health: api.HealthUnhealthy, Status: "draining",
			TotalCPU: 8, TotalMemory: 3 << 29, LastHeartbeat: &old,
		},
		{ID: "new", Health: api.HealthUnknown, Status: "active", TotalGPU: 2, UsedGPU: 1},
		{
			ID: "small", Health: api.HealthHealthy, Status: "active",
			TotalCPU: 1, UsedCPU: 1, UsedMemory: 50 << 20, TotalMemory: 512 << 20,
		},
	}

	var out bytes.Buffer
	require.NoError(t, writeHostTable(&out, hosts, now))
	want := "" +
		"ID        ADDRESS   HEALTH              CPU   MEMORY (GiB)  GPUS FREE  LAST HEARTBEAT\n" +
		"gpu-1     10.0.0.1  healthy             4/32  16.0/256.0    1/4        7s ago\n" +
		"cpu-only  -         unhealthy,draining  0/8   0.0/1.5       0/0        3h ago\n" +
		"new       -         unknown             0/0   0.0/0.0       1/2        -\n" +
		"small     -         healthy             1/1   0.049/0.5     0/0        -\n"
	assert.Equal(t, want, out.String())
}

func TestSmallMemoryNeverPrintsAsZero(t *testing.T) {
	t.Parallel()
	cases := []struct {
		bytes      int64
		gib, sized string
	}{
		{0, "0.0", "0 B"},
		{1, "0.00000000093", "1 B"},
		{1023, "0.00000095", "1023 B"},
		{1 << 10, "0.00000095", "1.0 KiB"},
		{1 << 20, "0.00098", "1.0 MiB"},
		{50 << 20, "0.049", "50.0 MiB"},
		{100 << 20, "0.098", "100.0 MiB"},
		{103 << 20, "0.1", "103.0 MiB"},
		{80 << 20, "0.078", "80.0 MiB"},
		{512 << 20, "0.5", "512.0 MiB"},
		{16 << 30, "16.0", "16.0 GiB"},
		{3 << 39, "1536.0", "1.5 TiB"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.gib, gib(tc.bytes), "gib(%d)", tc.bytes)
		assert.Equal(t, tc.sized, formatSize(tc.bytes), "formatSize(%d)", tc.bytes)
	}
}

func TestHostDetailsSmallMemory(t *testing.T) {
	t.Parallel()
	h := api.Host{
		ID: "small", Health: api.HealthHealthy, UsedMemory: 50 << 20,
		TotalMemory: 2 << 30, MemoryInUse: 300 << 20,
	}
	var out bytes.Buffer
	require.NoError(t, writeHostDetails(&out, h, time.Now()))
	assert.Regexp(t, `(?m)^Memory allocated:\s+50\.0 MiB/2\.0 GiB \(300\.0 MiB in use\)$`, out.String())
}

func TestAge(t *testing.T) {
	t.Parallel()
	now := time.Now()
	at := func(d time.Duration) *time.Time { v := now.Add(-d); return &v }
	assert.Equal(t, "-", age(nil, now))
	assert.Equal(t, "just now", age(at(-time.Second), now))
	assert.Equal(t, "0s ago", age(at(0), now))
	assert.Equal(t, "59s ago", age(at(59*time.Second), now))
	assert.Equal(t, "2m ago", age(at(150*time.Second), now))
	assert.Equal(t, "47h ago", age(at(47*time.Hour), now))
	assert.Equal(t, "3d ago", age(at(80*time.Hour), now))
}

func TestAllocationOutput(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := now.Add(90 * time.Second)
	a := api.Allocation{
		ID: "alloc-1", HostID: "gpu-1", HostAddress: "10.0.0.1", CPU: 4, Memory: 16 << 30,
		GPUs:               []api.AllocatedGPU{{Index: 0, UUID: "GPU-a"}, {Index: 1, UUID: "GPU-b"}},
		CUDAVisibleDevices: "GPU-a,GPU-b", Owner: "alice", State: "active",
		CreatedAt: now.Add(-time.Minute), ExpiresAt: &exp, IdempotencyKey: "k1",
	}

	var out bytes.Buffer
	require.NoError(t, writeAllocation(&out, a, true))
	assert.Contains(t, out.String(), "Allocated alloc-1 on host gpu-1 (10.0.0.1).\n")
	assert.Contains(t, out.String(), "Memory:   16.0 GiB\n")
	assert.Contains(t, out.String(), "GPUs:     2\n")
	assert.Contains(t, out.String(), "\nCUDA_VISIBLE_DEVICES=GPU-a,GPU-b\n")

	out.Reset()
	require.NoError(t, writeAllocation(&out, a, false))
	assert.Contains(t, out.String(), `already exists for idempotency key "k1"`)

	out.Reset()
	require.NoError(t, writeAllocationTable(&out, []api.Allocation{a}, now))
	want := "" +
		"ID       HOST   OWNER  STATE   CPU  MEMORY (GiB)  GPUS  CREATED  EXPIRES\n" +
		"alloc-1  gpu-1  alice  active  4    16.0          2     1m ago   in 1m30s\n"
	assert.Equal(t, want, out.String())

	out.Reset()
	a.Memory = 50 << 20
	require.NoError(t, writeAllocation(&out, a, true))
	assert.Contains(t, out.String(), "Memory:   50.0 MiB\n")
	out.Reset()
	require.NoError(t, writeAllocationTable(&out, []api.Allocation{a}, now))
	assert.Contains(t, out.String(), "  0.049  ")
}

func TestPlural(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "0 hosts", plural(0, "host", "hosts"))
	assert.Equal(t, "1 host", plural(1, "host", "hosts"))
	assert.Equal(t, "2 hosts", plural(2, "host", "hosts"))
	assert.Equal(t, "-1 hosts", plural(-1, "host", "hosts"))
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	code, stdout, _ := run(t, "--version")
	assert.Equal(t, 0, code)
	assert.Regexp(t, `^remotegpu-coordinator \S+\n$`, stdout)
}

func TestRenewalOutput(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := now.Add(90 * time.Second)
	a := api.Allocation{ID: "alloc-1", HostID: "gpu-1", ExpiresAt: &exp}

	var out bytes.Buffer
	require.NoError(t, writeRenewal(&out, a, now))
	assert.Equal(t, "renewed allocation alloc-1 on host gpu-1; it expires at "+
		"2026-01-02T03:05:35Z (in 1m30s)\n", out.String())

	out.Reset()
	a.ExpiresAt = nil
	require.NoError(t, writeRenewal(&out, a, now))
	assert.Equal(t, "renewed allocation alloc-1 on host gpu-1; it has no expiry\n", out.String())
}
