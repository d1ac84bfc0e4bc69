package gpu

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Backend is a source of GPU inventory and state.
type Backend interface {
	// GPUs returns the GPUs found at start, in NVML index order.
	GPUs() []keyspace.GPUInfo
	// Sample reads the current state of every GPU in GPUs, in the same
	// order.
	Sample() []keyspace.GPUStatus
	// Close stops background work and releases the driver. A second call
	// does nothing.
	Close() error
}

// ErrNoDriver is returned by OpenNVML when NVML cannot be loaded or used on
// this host: no library, no loaded driver or no permission on the device
// files.
var ErrNoDriver = errors.New("NVIDIA driver not available")

// DefaultRecoveryPeriod is used when Options.RecoveryPeriod is zero.
const DefaultRecoveryPeriod = 5 * time.Minute

// Options configures an NVML backend.
type Options struct {
	// Logger receives inventory, fault and recovery messages.
	Logger *slog.Logger
	// Now is the clock used for health decisions; time.Now when nil.
	Now func() time.Time
	// RecoveryPeriod is how long a GPU stays unhealthy after its last
	// fault.
	RecoveryPeriod time.Duration
	// EventWait bounds one wait for NVML events, and so how long Close may
	// block; 500 ms when zero.
	EventWait time.Duration
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RecoveryPeriod <= 0 {
		o.RecoveryPeriod = DefaultRecoveryPeriod
	}
	if o.EventWait <= 0 {
		o.EventWait = 500 * time.Millisecond
	}
}

// None is a backend without GPUs.
type None struct {
	// Reason explains why the host reports no GPUs.
	Reason string
}

var _ Backend = None{}

// GPUs returns an empty inventory.
func (None) GPUs() []keyspace.GPUInfo { return []keyspace.GPUInfo{} }

// Sample returns an empty list.
func (None) Sample() []keyspace.GPUStatus { return []keyspace.GPUStatus{} }

// Close does nothing.
func (None) Close() error { return nil }

// OpenDriver opens the host's real NVML library; ctx bounds event
// watching as in OpenNVML. When NVML cannot be used it logs why, once, and
// returns None carrying the reason, so the agent runs without GPUs instead
// of failing.
func OpenDriver(ctx context.Context, opts Options) Backend {
	return openOrNone(ctx, nvml.New(), opts)
}

// OpenSimulated opens go-nvml's simulated DGX A100 server (see
// NewSimulatedDGXA100) with GPU UUIDs derived from hostID.
func OpenSimulated(ctx context.Context, hostID string, opts Options) (Backend, error) {
	return OpenNVML(ctx, NewSimulatedDGXA100(hostID), opts)
}

func openOrNone(ctx context.Context, lib nvml.Interface, opts Options) Backend {
	opts.setDefaults()
	b, err := OpenNVML(ctx, lib, opts)
	if err == nil {
		return b
	}
	if errors.Is(err, ErrNoDriver) {
		opts.Logger.Warn(noDriverMessage(err), "error", err)
	} else {
		opts.Logger.Error("NVML is unusable; reporting zero GPUs",
			"error", err)
	}
	return None{Reason: err.Error()}
}

// nvmlLibrary is the library that nvml.New, given no path, loads
// (go-nvml v0.13.4-1).
const nvmlLibrary = "libnvidia-ml.so.1"

// noDriverMessage returns the warning for an ErrNoDriver from the real
// NVML library: what is missing and how to fix it or silence it.
func noDriverMessage(err error) string {
	const orNone = "or, on a host without GPUs, run with --gpu-backend " +
		"none, which silences this warning; reporting zero GPUs"
	var ret nvml.Return
	errors.As(err, &ret)
	switch ret {
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "NVIDIA driver not loaded: " + nvmlLibrary + " is " +
			"installed but the nvidia kernel module is not loaded; load " +
			"it or reinstall the NVIDIA driver, " + orNone
	case nvml.ERROR_NO_PERMISSION:
		return "no permission to use the NVIDIA driver: give the agent " +
			"read and write access to /dev/nvidiactl and /dev/nvidia*, " +
			orNone
	}
	return "no NVIDIA driver found: cannot load " + nvmlLibrary +
		"; install the NVIDIA driver, " + orNone
}
