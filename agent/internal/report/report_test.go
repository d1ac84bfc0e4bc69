package report

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/agent/internal/collect"
	"github.com/YoungBoyGod/remotegpu/agent/internal/gpu"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixedSource is a CPUMemorySource with set values.
type fixedSource struct {
	capacity collect.Capacity
	sample   collect.Sample
	err      error
}

func (f fixedSource) Capacity() collect.Capacity { return f.capacity }

func (f fixedSource) Sample(context.Context) (collect.Sample, error) {
	return f.sample, f.err
}

func TestDocumentsFromSources(t *testing.T) {
	t.Parallel()
	sim, err := gpu.OpenSimulated(context.Background(), "rep-1", gpu.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, sim.Close()) }()

	labels := map[string]string{"zone": "a"}
	h := &Host{
		ID: "rep-1", Name: "Rep One", Address: "10.0.0.7",
		Labels: labels, AgentVersion: "v9",
		CPUMemory: fixedSource{
			capacity: collect.Capacity{CPUs: 6, MemoryBytes: 16 << 30,
				HostCPUs: 8, HostMemoryBytes: 32 << 30},
			sample: collect.Sample{CPUPercent: 12.5, MemoryTotal: 16 << 30,
				MemoryUsed: 4 << 30, MemoryAvailable: 12 << 30, Load1: 0.5},
		},
		GPUs: sim,
	}

	info := h.Info()
	require.NoError(t, info.Validate())
	assert.Equal(t, 6, info.TotalCPU, "offered capacity, not the host's")
	assert.Equal(t, int64(16<<30), info.TotalMemory)
	assert.Len(t, info.GPUs, 8)
	assert.Equal(t, "v9", info.AgentVersion)
	labels["zone"] = "changed"
	assert.Equal(t, "a", info.Labels["zone"], "labels are copied")

	st, err := h.Status(context.Background())
	require.NoError(t, err)
	assert.InDelta(t, 12.5, st.CPUPercent, 1e-9)
	assert.Equal(t, int64(4<<30), st.UsedMemory)
	assert.Equal(t, int64(12<<30), st.AvailableMemory)
	assert.Len(t, st.GPUs, 8)

	data, err := keyspace.Encode(st)
	require.NoError(t, err)
	_, err = keyspace.DecodeHostStatus("k", []byte(data))
	require.NoError(t, err)
}

func TestNoGPUsEncodeAsEmptyLists(t *testing.T) {
	t.Parallel()
	h := &Host{ID: "rep-2", CPUMemory: fixedSource{}, GPUs: gpu.None{}}
	info := h.Info()
	assert.NotNil(t, info.GPUs)
	st, err := h.Status(context.Background())
	require.NoError(t, err)
	assert.NotNil(t, st.GPUs)

	data, err := keyspace.Encode(info)
	require.NoError(t, err)
	assert.Contains(t, data, `"gpus":[]`)
}

func TestStatusPassesSampleError(t *testing.T) {
	t.Parallel()
	boom := errors.New("read CPU times: boom")
	h := &Host{ID: "rep-3", CPUMemory: fixedSource{err: boom}, GPUs: gpu.None{}}
	_, err := h.Status(context.Background())
	require.ErrorIs(t, err, boom)
}
