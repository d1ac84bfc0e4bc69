package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/YoungBoyGod/remotegpu/agent/internal/advertise"
	"github.com/YoungBoyGod/remotegpu/agent/internal/collect"
	"github.com/YoungBoyGod/remotegpu/agent/internal/config"
	"github.com/YoungBoyGod/remotegpu/agent/internal/gpu"
	"github.com/YoungBoyGod/remotegpu/agent/internal/report"
)

// setupHost resolves the host's identity and address and opens its CPU,
// memory and GPU sources, logging each choice. The caller must Close the
// returned host's GPU backend. GPU event watching stops when ctx ends.
func setupHost(ctx context.Context, cfg *config.Config,
	log *slog.Logger) (*report.Host, error) {
	identity, err := config.ResolveHostID(cfg.HostID, config.MachineIDPath,
		os.Hostname)
	if err != nil {
		return nil, err
	}
	log.Info("host ID chosen", "host_id", identity.ID,
		"source", identity.Source, "skipped", identity.Skipped)

	labels, err := config.ParseLabels(cfg.Labels)
	if err != nil {
		return nil, usageError{err}
	}
	addr, err := resolveAddress(cfg.AdvertiseAddr, log)
	if err != nil {
		return nil, err
	}
	cpuMem, err := openCollector(ctx, log)
	if err != nil {
		return nil, err
	}
	gpus, err := openGPUs(ctx, cfg, identity.ID, log)
	if err != nil {
		return nil, err
	}

	return &report.Host{
		ID:           identity.ID,
		Name:         hostName(cfg.Name, identity.ID),
		Address:      addr,
		Labels:       labels,
		AgentVersion: agentVersion(),
		CPUMemory:    cpuMem,
		GPUs:         gpus,
	}, nil
}

// hostName returns the --name value, else the hostname, else the host ID.
func hostName(flag, hostID string) string {
	if flag != "" {
		return flag
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		return name
	}
	return hostID
}

// resolveAddress picks the advertise address. A template that fails is a
// usage error; finding no address without a template is not.
func resolveAddress(tmpl string, log *slog.Logger) (string, error) {
	choice, err := advertise.Resolve(tmpl)
	if err != nil {
		if tmpl != "" {
			return "", usageError{err}
		}
		return "", err
	}
	log.Info("advertise address chosen", "address", choice.Addr,
		"source", choice.Source, "reason", choice.Reason)
	return choice.Addr, nil
}

func openCollector(ctx context.Context, log *slog.Logger) (*collect.Collector, error) {
	c, err := collect.New(ctx, collect.Options{})
	if err != nil {
		return nil, fmt.Errorf("read CPU and memory: %w", err)
	}
	capacity := c.Capacity()
	cg := capacity.Cgroup
	log.Info("CPU and memory capacity",
		"cpus", capacity.CPUs, "host_cpus", capacity.HostCPUs,
		"memory_bytes", capacity.MemoryBytes,
		"host_memory_bytes", capacity.HostMemoryBytes,
		"cgroup", cg.Version,
		"cgroup_cpu_limit", cg.CPU, "cgroup_memory_limit", cg.Memory,
		"cpu_lowered_by_cgroup", capacity.CPULimited(),
		"memory_lowered_by_cgroup", capacity.MemoryLimited())
	return c, nil
}

func openGPUs(ctx context.Context, cfg *config.Config, hostID string,
	log *slog.Logger) (gpu.Backend, error) {
	opts := gpu.Options{Logger: log, RecoveryPeriod: cfg.GPURecoveryPeriod}
	var b gpu.Backend
	switch cfg.GPUBackend {
	case config.BackendNone:
		b = gpu.None{Reason: "--gpu-backend none"}
	case config.BackendMockDGXA100:
		sim, err := gpu.OpenSimulated(ctx, hostID, opts)
		if err != nil {
			return nil, fmt.Errorf("open simulated GPUs: %w", err)
		}
		b = sim
	case config.BackendNVML:
		b = gpu.OpenDriver(ctx, opts)
	default:
		return nil, usageError{errors.New("unknown --gpu-backend " + cfg.GPUBackend)}
	}
	log.Info("GPUs found", "backend", cfg.GPUBackend, "count", len(b.GPUs()))
	return b, nil
}
