package gpu

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Fault reasons kept in GPUStatus.HealthReason and LastFaultReason.
const (
	reasonLost            = "GPU is lost (ERROR_GPU_IS_LOST)"
	reasonRetiredPending  = "retired pages pending; reset the GPU"
	reasonRemapFailure    = "row remapping failed"
	reasonDoubleBitEvent  = "double-bit ECC error event"
	reasonXIDFormat       = "critical XID %d"
	reasonUncorrectedForm = "%d new uncorrectable ECC errors"
)

// device is one GPU of the inventory. Its handle is used by Sample and by
// the event goroutine; NVML calls are safe from several threads.
type device struct {
	info keyspace.GPUInfo
	lib  nvml.Interface
	now  func() time.Time
	log  *slog.Logger

	// mu guards the fields below.
	mu sync.Mutex
	// handle is replaced when a lost GPU is found again, because a lost
	// GPU's old handle may stay unusable.
	handle nvml.Device
	// lost is set when the previous sample found the GPU lost.
	lost   bool
	health healthTracker
	// healthy is the health reported by the previous sample, to log
	// transitions once.
	healthy bool
	// uncorrected is the volatile uncorrectable ECC count at the previous
	// sample; nil before the first successful read.
	uncorrected *uint64
	// logged records "call: return code" pairs already logged, so that a
	// failing call is logged once, not at every sample.
	logged map[string]bool
}

// fault records a one-off fault from the event goroutine.
func (d *device) fault(reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log.Warn("GPU fault", "reason", reason)
	d.health.event(d.now(), reason)
}

// currentHandle returns the handle to use for the GPU.
func (d *device) currentHandle() nvml.Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.handle
}

// reopenLocked looks the GPU up again by UUID after it was lost. On
// failure the old handle stays, and the next sample tries again.
func (d *device) reopenLocked() {
	h, ret := d.lib.DeviceGetHandleByUUID(d.info.UUID)
	if ret == nvml.SUCCESS {
		d.handle = h
	}
}

// sample reads the GPU's state. Unsupported fields stay nil; a lost GPU is
// reported unhealthy and its other fields nil.
func (d *device) sample() keyspace.GPUStatus {
	d.mu.Lock()
	defer d.mu.Unlock()

	if d.lost {
		d.reopenLocked()
	}
	r := reading{d: d, st: keyspace.GPUStatus{
		Index: d.info.Index, UUID: d.info.UUID,
	}}
	r.utilization()
	r.memory()
	r.temperature()
	r.power()
	r.ecc()
	r.retirement()

	d.lost = r.lost
	now := d.now()
	d.health.observe(now, strings.Join(r.conditions, "; "))
	for _, reason := range r.events {
		d.health.event(now, reason)
	}
	d.fillHealthLocked(&r.st, now)
	return r.st
}

func (d *device) fillHealthLocked(st *keyspace.GPUStatus, now time.Time) {
	healthy := d.health.healthy(now)
	st.Health = keyspace.GPUHealthy
	if !healthy {
		st.Health = keyspace.GPUUnhealthy
		st.HealthReason = d.health.lastFaultReason
	}
	if !d.health.lastFaultAt.IsZero() {
		at := d.health.lastFaultAt
		st.LastFaultAt = &at
		st.LastFaultReason = d.health.lastFaultReason
	}

	switch {
	case d.healthy && !healthy:
		d.log.Warn("GPU unhealthy", "reason", st.HealthReason)
	case !d.healthy && healthy:
		d.log.Info("GPU healthy again", "last_fault",
			d.health.lastFaultReason,
			"quiet_for", now.Sub(d.health.lastSeenAt))
	}
	d.healthy = healthy
}

// reading collects one sample of a device. After the GPU is found lost,
// the remaining calls are skipped.
type reading struct {
	d    *device
	st   keyspace.GPUStatus
	lost bool
	// conditions are faults present now; events are one-off faults.
	conditions []string
	events     []string
}

// ok reports whether an NVML call succeeded. NOT_SUPPORTED is silent;
// GPU_IS_LOST marks the GPU lost; any other code is logged once per call.
func (r *reading) ok(call string, ret nvml.Return) bool {
	switch ret {
	case nvml.SUCCESS:
		return true
	case nvml.ERROR_NOT_SUPPORTED:
		return false
	case nvml.ERROR_GPU_IS_LOST:
		if !r.lost {
			r.lost = true
			r.conditions = append(r.conditions, reasonLost)
		}
		return false
	}
	key := call + ": " + ret.Error()
	if !r.d.logged[key] {
		r.d.logged[key] = true
		err := fmt.Errorf("%s on GPU %s: %w", call, r.d.info.UUID, ret)
		r.d.log.Warn("NVML call failed; field left out", "error", err)
	}
	return false
}

func (r *reading) utilization() {
	if r.lost {
		return
	}
	u, ret := r.d.handle.GetUtilizationRates()
	if r.ok("GetUtilizationRates", ret) {
		r.st.UtilizationGPUPercent = ptr(u.Gpu)
		r.st.UtilizationMemoryPercent = ptr(u.Memory)
	}
}

func (r *reading) memory() {
	if r.lost {
		return
	}
	_, used, ret := readMemoryRet(r.d.handle)
	if r.ok("GetMemoryInfo", ret) {
		r.st.MemoryUsed = ptr(used)
	}
}

func (r *reading) temperature() {
	if r.lost {
		return
	}
	t, ret := r.d.handle.GetTemperature(nvml.TEMPERATURE_GPU)
	if r.ok("GetTemperature", ret) {
		r.st.TemperatureC = ptr(t)
	}
}

// power converts NVML's milliwatts to watts.
func (r *reading) power() {
	if r.lost {
		return
	}
	mw, ret := r.d.handle.GetPowerUsage()
	if r.ok("GetPowerUsage", ret) {
		r.st.PowerW = ptr(float64(mw) / 1000)
	}
	if r.lost {
		return
	}
	mw, ret = r.d.handle.GetEnforcedPowerLimit()
	if r.ok("GetEnforcedPowerLimit", ret) {
		r.st.PowerLimitW = ptr(float64(mw) / 1000)
	}
}

// ecc reads the volatile ECC counters, which count since the driver loaded.
// A rise of the uncorrectable count between two samples is a fault. Errors
// counted before the agent started are not, because they cannot be
// distinguished from ones already handled.
func (r *reading) ecc() {
	if r.lost {
		return
	}
	n, ret := r.d.handle.GetTotalEccErrors(
		nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC)
	if r.ok("GetTotalEccErrors(corrected)", ret) {
		r.st.ECCCorrected = ptr(n)
	}
	if r.lost {
		return
	}
	n, ret = r.d.handle.GetTotalEccErrors(
		nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
	if !r.ok("GetTotalEccErrors(uncorrected)", ret) {
		return
	}
	r.st.ECCUncorrected = ptr(n)
	if prev := r.d.uncorrected; prev != nil && n > *prev {
		r.events = append(r.events,
			fmt.Sprintf(reasonUncorrectedForm, n-*prev))
	}
	r.d.uncorrected = ptr(n)
}

// retirement checks for memory pages waiting to be retired (before Ampere)
// and failed row remappings (Ampere and later). Both last until the GPU is
// reset, so they are conditions.
func (r *reading) retirement() {
	if r.lost {
		return
	}
	pending, ret := r.d.handle.GetRetiredPagesPendingStatus()
	if r.ok("GetRetiredPagesPendingStatus", ret) &&
		pending == nvml.FEATURE_ENABLED {
		r.conditions = append(r.conditions, reasonRetiredPending)
	}
	if r.lost {
		return
	}
	_, _, _, failed, ret := r.d.handle.GetRemappedRows()
	if r.ok("GetRemappedRows", ret) && failed {
		r.conditions = append(r.conditions, reasonRemapFailure)
	}
}

func ptr[T any](v T) *T { return &v }
