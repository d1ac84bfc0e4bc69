package gpu

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a clock that moves only when the test advances it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const testRecovery = time.Minute

func testOptions(clock *fakeClock) Options {
	return Options{
		Now:            clock.Now,
		RecoveryPeriod: testRecovery,
		EventWait:      20 * time.Millisecond,
	}
}

func openSim(t *testing.T, srv *dgxa100.Server, clock *fakeClock) *NVML {
	t.Helper()
	b, err := OpenNVML(context.Background(), srv, testOptions(clock))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func simDevice(srv *dgxa100.Server, i int) *dgxa100.Device {
	return srv.Devices[i].(*dgxa100.Device)
}

func TestSimulatedInventory(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-a")
	b := openSim(t, srv, newFakeClock())

	gpus := b.GPUs()
	require.Len(t, gpus, 8)
	const wantMemory = int64(40960) << 20
	for i, g := range gpus {
		assert.Equal(t, i, g.Index)
		assert.Equal(t, SimulatedUUID("host-a", i), g.UUID)
		assert.Equal(t, wantMemory, g.MemoryTotal)
		assert.Equal(t, "Mock NVIDIA A100-SXM4-40GB", g.Name)
		assert.Equal(t, simDevice(srv, i).PciBusID, g.PCIBusID)
	}
	info := keyspace.HostInfo{ID: "host-a", GPUs: gpus}
	require.NoError(t, info.Validate(), "UUIDs must be unique")

	statuses := b.Sample()
	require.Len(t, statuses, 8)
	for i, st := range statuses {
		assert.Equal(t, gpus[i].UUID, st.UUID)
		assert.Equal(t, keyspace.GPUHealthy, st.Health)
		require.NotNil(t, st.MemoryUsed)
		require.NotNil(t, st.TemperatureC)
		assert.Equal(t, uint32(simTemperatureC), *st.TemperatureC)
		require.NotNil(t, st.PowerW)
		assert.InDelta(t, 62.0, *st.PowerW, 1e-9)
		require.NotNil(t, st.PowerLimitW)
		assert.InDelta(t, 400.0, *st.PowerLimitW, 1e-9)
		assert.Nil(t, st.LastFaultAt)
	}
}

func TestSimulatedUUIDsDifferPerHost(t *testing.T) {
	t.Parallel()
	assert.Equal(t, SimulatedUUID("a", 0), SimulatedUUID("a", 0))
	assert.NotEqual(t, SimulatedUUID("a", 0), SimulatedUUID("b", 0))
	assert.NotEqual(t, SimulatedUUID("a", 0), SimulatedUUID("a", 1))
	assert.Regexp(t,
		`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`,
		SimulatedUUID("a", 0))
}

func notSupported(d *dgxa100.Device) {
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		return nvml.Memory{}, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType,
		nvml.EccCounterType) (uint64, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
		return 0, 0, false, false, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
}

func TestNotSupportedLeavesFieldsNil(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-ns")
	notSupported(simDevice(srv, 2))
	b := openSim(t, srv, newFakeClock())

	require.Len(t, b.GPUs(), 8, "GPU with unsupported calls must be kept")
	assert.Zero(t, b.GPUs()[2].MemoryTotal)

	st := b.Sample()[2]
	assert.Equal(t, keyspace.GPUHealthy, st.Health)
	assert.Nil(t, st.UtilizationGPUPercent)
	assert.Nil(t, st.UtilizationMemoryPercent)
	assert.Nil(t, st.MemoryUsed)
	assert.Nil(t, st.TemperatureC)
	assert.Nil(t, st.PowerW)
	assert.Nil(t, st.PowerLimitW)
	assert.Nil(t, st.ECCCorrected)
	assert.Nil(t, st.ECCUncorrected)
	assert.NotNil(t, b.Sample()[1].TemperatureC, "other GPUs unaffected")
}

func TestMemoryFallsBackToV1(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-v1")
	d := simDevice(srv, 0)
	d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		return nvml.Memory_v2{}, nvml.ERROR_FUNCTION_NOT_FOUND
	}
	d.MemoryInfo.Used = 3 << 30
	b := openSim(t, srv, newFakeClock())

	assert.Equal(t, int64(40960)<<20, b.GPUs()[0].MemoryTotal)
	used := b.Sample()[0].MemoryUsed
	require.NotNil(t, used)
	assert.Equal(t, int64(3<<30), *used)
}

// loseGPU makes every call of d return ERROR_GPU_IS_LOST while lost is set.
func loseGPU(d *dgxa100.Device, lost *atomic.Bool) {
	util := d.GetUtilizationRatesFunc
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		if lost.Load() {
			return nvml.Utilization{}, nvml.ERROR_GPU_IS_LOST
		}
		return util()
	}
	temp := d.GetTemperatureFunc
	d.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
		if lost.Load() {
			return 0, nvml.ERROR_GPU_IS_LOST
		}
		return temp(s)
	}
}

func TestLostGPUIsUnhealthyUntilRecovered(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-lost")
	var lost atomic.Bool
	loseGPU(simDevice(srv, 5), &lost)
	clock := newFakeClock()
	b := openSim(t, srv, clock)

	lost.Store(true)
	statuses := b.Sample()
	st := statuses[5]
	assert.Equal(t, keyspace.GPUUnhealthy, st.Health)
	assert.Equal(t, reasonLost, st.HealthReason)
	assert.Nil(t, st.UtilizationGPUPercent)
	assert.Nil(t, st.TemperatureC, "calls after the loss are skipped")
	for i, other := range statuses {
		if i != 5 {
			assert.Equal(t, keyspace.GPUHealthy, other.Health, "GPU %d", i)
		}
	}

	// Still lost a while later: the fault keeps its start time.
	faultAt := *st.LastFaultAt
	clock.Advance(2 * testRecovery)
	st = b.Sample()[5]
	assert.Equal(t, keyspace.GPUUnhealthy, st.Health)
	assert.Equal(t, faultAt, *st.LastFaultAt)

	// Each sample after the loss looks the GPU up again by UUID.
	assert.NotEmpty(t, srv.DeviceGetHandleByUUIDCalls())

	// Back on the bus: unhealthy until a quiet recovery period has passed.
	lost.Store(false)
	clock.Advance(testRecovery / 2)
	assert.Equal(t, keyspace.GPUUnhealthy, b.Sample()[5].Health)
	clock.Advance(testRecovery)
	st = b.Sample()[5]
	assert.Equal(t, keyspace.GPUHealthy, st.Health)
	assert.Empty(t, st.HealthReason)
	assert.Equal(t, reasonLost, st.LastFaultReason)
	assert.Equal(t, faultAt, *st.LastFaultAt)
}

func TestGPULostAtStartIsLeftOut(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-gone")
	simDevice(srv, 3).GetUUIDFunc = func() (string, nvml.Return) {
		return "", nvml.ERROR_GPU_IS_LOST
	}
	b := openSim(t, srv, newFakeClock())

	gpus := b.GPUs()
	require.Len(t, gpus, 7)
	for _, g := range gpus {
		assert.NotEqual(t, 3, g.Index)
	}
	assert.Len(t, b.Sample(), 7)
}

// eventFeed is an event set that delivers events sent on its channel.
type eventFeed struct {
	events chan nvml.EventData
	freed  atomic.Bool
}

func newEventFeed(srv *dgxa100.Server) *eventFeed {
	f := &eventFeed{events: make(chan nvml.EventData)}
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: f.wait,
			FreeFunc: func() nvml.Return {
				f.freed.Store(true)
				return nvml.SUCCESS
			},
		}, nvml.SUCCESS
	}
	return f
}

func (f *eventFeed) wait(ms uint32) (nvml.EventData, nvml.Return) {
	select {
	case e := <-f.events:
		return e, nvml.SUCCESS
	case <-time.After(time.Duration(ms) * time.Millisecond):
		return nvml.EventData{}, nvml.ERROR_TIMEOUT
	}
}

func xid(d nvml.Device, code uint64) nvml.EventData {
	return nvml.EventData{
		Device: d, EventType: nvml.EventTypeXidCriticalError, EventData: code,
	}
}

func TestXIDEvents(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-xid")
	feed := newEventFeed(srv)
	clock := newFakeClock()
	b := openSim(t, srv, clock)
	dev1 := srv.Devices[1]

	// Application XIDs leave the GPU healthy. The feed is unbuffered, so
	// each completed send proves the events before it were handled.
	for code := range applicationXIDs {
		feed.events <- xid(dev1, code)
	}
	feed.events <- nvml.EventData{Device: dev1, EventType: nvml.EventTypeSingleBitEccError}
	feed.events <- xid(dev1, 13)
	st := b.Sample()[1]
	assert.Equal(t, keyspace.GPUHealthy, st.Health)
	assert.Nil(t, st.LastFaultAt)

	feed.events <- xid(dev1, 79)
	require.Eventually(t, func() bool {
		return b.Sample()[1].Health == keyspace.GPUUnhealthy
	}, 5*time.Second, 10*time.Millisecond)
	st = b.Sample()[1]
	assert.Equal(t, "critical XID 79", st.HealthReason)
	assert.Equal(t, keyspace.GPUHealthy, b.Sample()[0].Health)

	clock.Advance(testRecovery - time.Second)
	assert.Equal(t, keyspace.GPUUnhealthy, b.Sample()[1].Health)

	clock.Advance(time.Second)
	st = b.Sample()[1]
	assert.Equal(t, keyspace.GPUHealthy, st.Health)
	assert.Equal(t, "critical XID 79", st.LastFaultReason)
	require.NotNil(t, st.LastFaultAt)
}

func TestEventFaultReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		event  nvml.EventData
		reason string
		fault  bool
	}{
		{"critical xid", xid(nil, 48), "critical XID 48", true},
		{"application xid", xid(nil, 31), "", false},
		{"double-bit ECC", nvml.EventData{
			EventType: nvml.EventTypeDoubleBitEccError}, reasonDoubleBitEvent, true},
		{"single-bit ECC", nvml.EventData{
			EventType: nvml.EventTypeSingleBitEccError}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, fault := eventFault(tt.event)
			assert.Equal(t, tt.fault, fault)
			assert.Equal(t, tt.reason, reason)
		})
	}
}

func TestEventWithoutDeviceMarksAll(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-all")
	feed := newEventFeed(srv)
	b := openSim(t, srv, newFakeClock())

	feed.events <- nvml.EventData{EventType: nvml.EventTypeDoubleBitEccError}
	require.Eventually(t, func() bool {
		for _, st := range b.Sample() {
			if st.Health != keyspace.GPUUnhealthy {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond)
}

func TestCloseFreesEventSet(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-close")
	feed := newEventFeed(srv)
	b, err := OpenNVML(context.Background(), srv, testOptions(newFakeClock()))
	require.NoError(t, err)

	require.NoError(t, b.Close())
	assert.True(t, feed.freed.Load())
	assert.Len(t, srv.ShutdownCalls(), 1)
	require.NoError(t, b.Close())
	assert.Len(t, srv.ShutdownCalls(), 1, "second Close does nothing")
}

func TestContextEndStopsEventsOnly(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-ctx")
	feed := newEventFeed(srv)
	ctx, cancel := context.WithCancel(context.Background())
	b, err := OpenNVML(ctx, srv, testOptions(newFakeClock()))
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()

	cancel()
	require.Eventually(t, feed.freed.Load, 5*time.Second, 10*time.Millisecond)
	assert.Empty(t, srv.ShutdownCalls(), "Shutdown waits for Close")
	assert.Len(t, b.Sample(), 8, "sampling works after the events stop")
}

func TestUncorrectableECCAndRetirement(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-ecc")
	var uncorrected atomic.Uint64
	var pending, remapFailed atomic.Bool
	d := simDevice(srv, 4)
	d.GetTotalEccErrorsFunc = func(kind nvml.MemoryErrorType,
		_ nvml.EccCounterType) (uint64, nvml.Return) {
		if kind == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
			return uncorrected.Load(), nvml.SUCCESS
		}
		return 7, nvml.SUCCESS
	}
	d.GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) {
		if pending.Load() {
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		return nvml.FEATURE_DISABLED, nvml.SUCCESS
	}
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
		return 0, 1, false, remapFailed.Load(), nvml.SUCCESS
	}
	clock := newFakeClock()

	// Errors counted before the agent started are a baseline, not a fault.
	uncorrected.Store(2)
	b := openSim(t, srv, clock)
	st := b.Sample()[4]
	assert.Equal(t, keyspace.GPUHealthy, st.Health)
	assert.Equal(t, uint64(7), *st.ECCCorrected)
	assert.Equal(t, uint64(2), *st.ECCUncorrected)

	uncorrected.Store(5)
	st = b.Sample()[4]
	assert.Equal(t, keyspace.GPUUnhealthy, st.Health)
	assert.Equal(t, "3 new uncorrectable ECC errors", st.HealthReason)

	clock.Advance(testRecovery)
	assert.Equal(t, keyspace.GPUHealthy, b.Sample()[4].Health)

	pending.Store(true)
	remapFailed.Store(true)
	st = b.Sample()[4]
	assert.Equal(t, keyspace.GPUUnhealthy, st.Health)
	assert.Equal(t, reasonRetiredPending+"; "+reasonRemapFailure,
		st.HealthReason)

	// The sample that finds the conditions gone starts the recovery.
	pending.Store(false)
	remapFailed.Store(false)
	clock.Advance(time.Second)
	assert.Equal(t, keyspace.GPUUnhealthy, b.Sample()[4].Health)
	clock.Advance(testRecovery)
	assert.Equal(t, keyspace.GPUHealthy, b.Sample()[4].Health)
}

func TestLibraryNotFound(t *testing.T) {
	t.Parallel()
	// This machine has no NVIDIA driver, so the real library fails to
	// load. Shutdown must not run: without Init it aborts the process.
	_, err := OpenNVML(context.Background(), nvml.New(), Options{})
	require.ErrorIs(t, err, ErrNoDriver)
	require.ErrorIs(t, err, nvml.ERROR_LIBRARY_NOT_FOUND)

	var logs bytes.Buffer
	opts := Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	b := OpenDriver(context.Background(), opts)
	none, ok := b.(None)
	require.True(t, ok, "want None, got %T", b)
	assert.Contains(t, none.Reason, "ERROR_LIBRARY_NOT_FOUND")
	assert.Empty(t, b.GPUs())
	assert.Empty(t, b.Sample())
	require.NoError(t, b.Close())
	assert.Equal(t, 1, strings.Count(logs.String(), "no NVIDIA driver"))
	assert.Contains(t, logs.String(), "ERROR_LIBRARY_NOT_FOUND")
	assert.Contains(t, logs.String(), "cannot load libnvidia-ml.so.1")
	assert.Contains(t, logs.String(), "install the NVIDIA driver")
	assert.Contains(t, logs.String(), "--gpu-backend none")
}

func TestNoDriverMessageNamesTheFix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ret  nvml.Return
		want string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver found: cannot load " +
			"libnvidia-ml.so.1; install the NVIDIA driver, or, on a host " +
			"without GPUs, run with --gpu-backend none"},
		{nvml.ERROR_DRIVER_NOT_LOADED, "nvidia kernel module is not loaded"},
		{nvml.ERROR_NO_PERMISSION, "access to /dev/nvidiactl and /dev/nvidia*"},
	}
	for _, tt := range tests {
		t.Run(tt.ret.Error(), func(t *testing.T) {
			srv := NewSimulatedDGXA100("host-nodriver")
			srv.InitFunc = func() nvml.Return { return tt.ret }
			var logs bytes.Buffer
			opts := Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}

			b := openOrNone(context.Background(), srv, opts)
			assert.IsType(t, None{}, b)
			assert.Contains(t, logs.String(), "level=WARN")
			assert.Contains(t, logs.String(), tt.want)
			assert.Contains(t, logs.String(), "--gpu-backend none")
			assert.Contains(t, logs.String(), "reporting zero GPUs")
			assert.Contains(t, logs.String(), tt.ret.Error())
		})
	}
}

func TestInitFailureNeverCallsShutdown(t *testing.T) {
	t.Parallel()
	for _, ret := range []nvml.Return{
		nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED,
		nvml.ERROR_NO_PERMISSION, nvml.ERROR_UNKNOWN,
	} {
		t.Run(ret.Error(), func(t *testing.T) {
			srv := NewSimulatedDGXA100("host-init")
			srv.InitFunc = func() nvml.Return { return ret }

			b := openOrNone(context.Background(), srv, Options{})
			none, ok := b.(None)
			require.True(t, ok, "want None, got %T", b)
			assert.Contains(t, none.Reason, ret.Error())
			assert.Empty(t, srv.ShutdownCalls())

			_, err := OpenNVML(context.Background(), srv, Options{})
			wantNoDriver := ret != nvml.ERROR_UNKNOWN
			assert.Equal(t, wantNoDriver, errors.Is(err, ErrNoDriver))
		})
	}
}

func TestDeviceCountFailureShutsDown(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-count")
	srv.DeviceGetCountFunc = func() (int, nvml.Return) {
		return 0, nvml.ERROR_UNKNOWN
	}
	_, err := OpenNVML(context.Background(), srv, Options{})
	require.ErrorIs(t, err, nvml.ERROR_UNKNOWN)
	assert.Len(t, srv.ShutdownCalls(), 1, "Init succeeded, so Shutdown runs")
}

func TestFailingCallIsLoggedOnce(t *testing.T) {
	t.Parallel()
	srv := NewSimulatedDGXA100("host-log")
	simDevice(srv, 0).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return 0, nvml.ERROR_UNKNOWN
	}
	var logs syncBuffer
	opts := testOptions(newFakeClock())
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	b, err := OpenNVML(context.Background(), srv, opts)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()

	for range 3 {
		st := b.Sample()[0]
		assert.Nil(t, st.TemperatureC)
		assert.Equal(t, keyspace.GPUHealthy, st.Health)
	}
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "GetTemperature on GPU"), out)
	assert.Contains(t, out, SimulatedUUID("host-log", 0))
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
