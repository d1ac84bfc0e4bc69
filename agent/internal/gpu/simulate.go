package gpu

import (
	"strconv"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/google/uuid"
)

// simulatedNamespace is the UUID namespace of simulated GPU UUIDs.
var simulatedNamespace = uuid.NewSHA1(uuid.NameSpaceURL,
	[]byte("https://github.com/YoungBoyGod/remotegpu/simulated-gpu"))

// SimulatedUUID returns the UUID of simulated GPU index on host hostID:
// "GPU-" and a name-based (version 5) UUID of the host ID and index. It is
// stable across restarts and differs between hosts, so several simulated
// agents on one machine never share a GPU UUID.
func SimulatedUUID(hostID string, index int) string {
	name := hostID + "/" + strconv.Itoa(index)
	return "GPU-" + uuid.NewSHA1(simulatedNamespace, []byte(name)).String()
}

// Values reported by every simulated GPU.
const (
	simTemperatureC = 34
	simPowerMW      = 62_000
	simPowerLimitMW = 400_000
)

// NewSimulatedDGXA100 returns go-nvml's eight-GPU DGX A100 mock, completed
// with every call the agent makes. GPU UUIDs are derived from hostID (see
// SimulatedUUID). Each GPU reports a PCI bus ID, v2 memory, utilisation,
// temperature, power, ECC counters, page retirement and row remapping, all
// idle and healthy. Its event set never reports an event. Tests replace
// single functions of its devices to inject faults.
func NewSimulatedDGXA100(hostID string) *dgxa100.Server {
	srv := dgxa100.New()
	for i, dev := range srv.Devices {
		d := dev.(*dgxa100.Device)
		d.UUID = SimulatedUUID(hostID, i)
		simulateDevice(d)
	}
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return QuietEventSet(), nvml.SUCCESS
	}
	return srv
}

func simulateDevice(d *dgxa100.Device) {
	d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		p := nvml.PciInfo{PciDeviceId: d.Config.PciDeviceId}
		for i := 0; i < len(d.PciBusID) && i < len(p.BusId)-1; i++ {
			p.BusId[i] = int8(d.PciBusID[i])
		}
		return p, nvml.SUCCESS
	}
	d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		m := d.MemoryInfo
		return nvml.Memory_v2{
			Total: m.Total, Used: m.Used, Free: m.Total - m.Used,
		}, nvml.SUCCESS
	}
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{}, nvml.SUCCESS
	}
	d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return simTemperatureC, nvml.SUCCESS
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		return simPowerMW, nvml.SUCCESS
	}
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) {
		return simPowerLimitMW, nvml.SUCCESS
	}
	d.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType,
		nvml.EccCounterType) (uint64, nvml.Return) {
		return 0, nvml.SUCCESS
	}
	d.GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) {
		return nvml.FEATURE_DISABLED, nvml.SUCCESS
	}
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
		return 0, 0, false, false, nvml.SUCCESS
	}
	d.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
		return watchedEvents, nvml.SUCCESS
	}
	d.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return {
		return nvml.SUCCESS
	}
}

// QuietEventSet returns a mock event set whose Wait blocks for its timeout
// and reports ERROR_TIMEOUT, like a real set on a healthy host.
func QuietEventSet() *mock.EventSet {
	return &mock.EventSet{
		WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
			time.Sleep(time.Duration(ms) * time.Millisecond)
			return nvml.EventData{}, nvml.ERROR_TIMEOUT
		},
		FreeFunc: func() nvml.Return { return nvml.SUCCESS },
	}
}
