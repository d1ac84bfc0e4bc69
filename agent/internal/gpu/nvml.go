package gpu

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// NVML is the Backend over an NVML library, real or mocked.
type NVML struct {
	lib     nvml.Interface
	opts    Options
	log     *slog.Logger
	devices []*device

	// cancel stops the event goroutine; wg waits for it.
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var _ Backend = (*NVML)(nil)

// OpenNVML initialises lib, reads the inventory and starts watching XID and
// ECC events until ctx ends or Close is called. It returns ErrNoDriver,
// wrapped with NVML's return code, when the library or driver is missing
// or not accessible. On success the caller must call Close, which shuts
// NVML down; sampling keeps working after ctx ends.
func OpenNVML(ctx context.Context, lib nvml.Interface, opts Options) (*NVML, error) {
	opts.setDefaults()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, initError(ret)
	}

	n := &NVML{lib: lib, opts: opts, log: opts.Logger}
	if err := n.readInventory(); err != nil {
		n.shutdown()
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.wg.Go(func() { n.watchEvents(ctx) })
	return n, nil
}

func initError(ret nvml.Return) error {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED,
		nvml.ERROR_NO_PERMISSION:
		return fmt.Errorf("%w: nvml.Init: %w", ErrNoDriver, ret)
	}
	return fmt.Errorf("nvml.Init: %w", ret)
}

func (n *NVML) readInventory() error {
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("nvml.DeviceGetCount: %w", ret)
	}
	for i := range count {
		d, err := n.openDevice(i)
		if err != nil {
			n.log.Warn("GPU left out of the inventory", "index", i,
				"error", err)
			continue
		}
		n.devices = append(n.devices, d)
	}
	return nil
}

func (n *NVML) openDevice(index int) (*device, error) {
	handle, ret := n.lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("DeviceGetHandleByIndex(%d): %w", index, ret)
	}
	uuid, ret := handle.GetUUID()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GetUUID of GPU %d: %w", index, ret)
	}

	info := keyspace.GPUInfo{Index: index, UUID: uuid}
	if name, ret := handle.GetName(); ret == nvml.SUCCESS {
		info.Name = name
	}
	if pci, ret := handle.GetPciInfo(); ret == nvml.SUCCESS {
		info.PCIBusID = cString(pci.BusId[:])
	}
	if total, _, ok := readMemory(handle); ok {
		info.MemoryTotal = total
	}
	return &device{
		info:    info,
		lib:     n.lib,
		handle:  handle,
		health:  healthTracker{period: n.opts.RecoveryPeriod},
		now:     n.opts.Now,
		log:     n.log.With("gpu_uuid", uuid, "gpu_index", index),
		logged:  make(map[string]bool),
		healthy: true,
	}, nil
}

// GPUs returns the inventory read at start.
func (n *NVML) GPUs() []keyspace.GPUInfo {
	out := make([]keyspace.GPUInfo, len(n.devices))
	for i, d := range n.devices {
		out[i] = d.info
	}
	return out
}

// Sample reads every GPU; see device.sample.
func (n *NVML) Sample() []keyspace.GPUStatus {
	out := make([]keyspace.GPUStatus, len(n.devices))
	for i, d := range n.devices {
		out[i] = d.sample()
	}
	return out
}

// Close stops the event goroutine, waits for it and then shuts NVML down,
// so no handle is in use during Shutdown.
func (n *NVML) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.wg.Wait()
		n.closeErr = n.shutdown()
	})
	return n.closeErr
}

// shutdown must run only after a successful Init.
func (n *NVML) shutdown() error {
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml.Shutdown: %w", ret)
	}
	return nil
}

// cString converts a NUL-terminated C char array.
func cString(chars []int8) string {
	b := make([]byte, 0, len(chars))
	for _, c := range chars {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// readMemory returns total and used memory in bytes. It prefers the v2
// call, because newer drivers count reserved memory as used in the v1 call,
// and falls back to v1 when v2 is unavailable. A lost GPU is reported
// through ret.
func readMemory(h nvml.Device) (total, used int64, ok bool) {
	total, used, ret := readMemoryRet(h)
	return total, used, ret == nvml.SUCCESS
}

func readMemoryRet(h nvml.Device) (total, used int64, ret nvml.Return) {
	m2, ret := h.GetMemoryInfo_v2()
	if ret == nvml.SUCCESS {
		return int64(m2.Total), int64(m2.Used), ret
	}
	if ret == nvml.ERROR_GPU_IS_LOST {
		return 0, 0, ret
	}
	m1, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return 0, 0, ret
	}
	return int64(m1.Total), int64(m1.Used), ret
}
