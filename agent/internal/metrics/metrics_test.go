package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/agent/internal/heartbeat"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ptr[T any](v T) *T { return &v }

func testInfo() keyspace.HostInfo {
	return keyspace.HostInfo{
		ID: "node-1", AgentVersion: "v1.2.3", TotalCPU: 16,
		TotalMemory: 64 << 30,
		GPUs: []keyspace.GPUInfo{
			{Index: 0, UUID: "GPU-a", MemoryTotal: 40 << 30},
			{Index: 1, UUID: "GPU-b", MemoryTotal: 40 << 30},
		},
	}
}

func TestHostGaugesFollowLastSample(t *testing.T) {
	m := New(testInfo())
	m.ObserveSample(keyspace.HostStatus{
		CPUPercent: 25, UsedMemory: 8 << 30, AvailableMemory: 56 << 30,
		Load1: 1.5,
		GPUs: []keyspace.GPUStatus{{
			Index: 0, UUID: "GPU-a", UtilizationGPUPercent: ptr(uint32(80)),
			MemoryUsed: ptr(int64(2 << 30)), TemperatureC: ptr(uint32(61)),
			PowerW: ptr(250.5), Health: keyspace.GPUHealthy,
			ECCUncorrected: ptr(uint64(3)),
		}, {
			// GPU-b's driver reports nothing but its health.
			Index: 1, UUID: "GPU-b", Health: keyspace.GPUUnhealthy,
		}},
	})

	want := `
# HELP remotegpu_agent_cpu_utilization_ratio CPU busy time over the last interval, from 0 to 1.
# TYPE remotegpu_agent_cpu_utilization_ratio gauge
remotegpu_agent_cpu_utilization_ratio 0.25
# HELP remotegpu_agent_gpu_healthy 1 while the GPU is healthy, 0 after a fault such as an Xid error.
# TYPE remotegpu_agent_gpu_healthy gauge
remotegpu_agent_gpu_healthy{index="0",uuid="GPU-a"} 1
remotegpu_agent_gpu_healthy{index="1",uuid="GPU-b"} 0
# HELP remotegpu_agent_gpu_utilization_ratio Share of time a kernel ran on the GPU, from 0 to 1.
# TYPE remotegpu_agent_gpu_utilization_ratio gauge
remotegpu_agent_gpu_utilization_ratio{index="0",uuid="GPU-a"} 0.8
# HELP remotegpu_agent_gpu_memory_used_bytes GPU memory in use.
# TYPE remotegpu_agent_gpu_memory_used_bytes gauge
remotegpu_agent_gpu_memory_used_bytes{index="0",uuid="GPU-a"} 2.147483648e+09
# HELP remotegpu_agent_gpu_memory_total_bytes GPU memory installed.
# TYPE remotegpu_agent_gpu_memory_total_bytes gauge
remotegpu_agent_gpu_memory_total_bytes{index="0",uuid="GPU-a"} 4.294967296e+10
remotegpu_agent_gpu_memory_total_bytes{index="1",uuid="GPU-b"} 4.294967296e+10
# HELP remotegpu_agent_gpu_ecc_errors_total ECC errors the driver counted, by type corrected or uncorrected.
# TYPE remotegpu_agent_gpu_ecc_errors_total counter
remotegpu_agent_gpu_ecc_errors_total{index="0",type="uncorrected",uuid="GPU-a"} 3
`
	err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"remotegpu_agent_cpu_utilization_ratio",
		"remotegpu_agent_gpu_healthy",
		"remotegpu_agent_gpu_utilization_ratio",
		"remotegpu_agent_gpu_memory_used_bytes",
		"remotegpu_agent_gpu_memory_total_bytes",
		"remotegpu_agent_gpu_ecc_errors_total")
	assert.NoError(t, err)

	// A GPU gone from the next sample loses its series.
	m.ObserveSample(keyspace.HostStatus{GPUs: []keyspace.GPUStatus{
		{Index: 0, UUID: "GPU-a", Health: keyspace.GPUHealthy},
	}})
	count, err := testutil.GatherAndCount(m.Registry(),
		"remotegpu_agent_gpu_healthy")
	require.NoError(t, err)
	assert.Equal(t, 1, count)
}

func TestObserverCounters(t *testing.T) {
	m := New(testInfo())
	m.Registered(0x1234)
	m.StatusWritten(heartbeat.WriteRegistered)
	m.StatusWritten(heartbeat.WriteMemory)
	m.StatusWritten(heartbeat.WriteMemory)
	m.EtcdError("grant", errors.New("context deadline exceeded"))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.registered))

	m.RegistrationLost(fmt.Errorf("%w: lease 1234", heartbeat.ErrLeaseLost))
	m.RegistrationLost(heartbeat.ErrStatusLost)
	m.RegistrationLost(errors.New("boom"))

	assert.Equal(t, 0.0, testutil.ToFloat64(m.registered))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.registrations))
	assert.Equal(t, 2.0, testutil.ToFloat64(
		m.statusWrites.WithLabelValues(heartbeat.WriteMemory)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.etcdErrors.WithLabelValues("grant")))
	for _, reason := range []string{LostLease, LostStatus, LostOther} {
		assert.Equal(t, 1.0, testutil.ToFloat64(m.lost.WithLabelValues(reason)),
			"reason %s", reason)
	}
}

func TestNamesPassPromlint(t *testing.T) {
	m := New(testInfo())
	m.ObserveSample(keyspace.HostStatus{GPUs: []keyspace.GPUStatus{{
		Index: 0, UUID: "GPU-a", UtilizationGPUPercent: ptr(uint32(1)),
		UtilizationMemoryPercent: ptr(uint32(1)), MemoryUsed: ptr(int64(1)),
		TemperatureC: ptr(uint32(1)), PowerW: ptr(1.0), PowerLimitW: ptr(2.0),
		ECCCorrected: ptr(uint64(1)), ECCUncorrected: ptr(uint64(1)),
	}}})
	m.Registered(1)
	m.StatusWritten(heartbeat.WriteRegistered)
	m.EtcdError("grant", nil)
	m.RegistrationLost(nil)

	problems, err := testutil.GatherAndLint(m.Registry())
	require.NoError(t, err)
	var ours []string
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, namespace) {
			ours = append(ours, p.Metric+": "+p.Text)
		}
	}
	assert.Empty(t, ours)
}
