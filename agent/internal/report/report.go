// Package report builds the agent's etcd documents, the registration
// (keyspace.HostInfo) and the live status (keyspace.HostStatus), from the
// CPU/memory collector and the GPU backend. Both "run" and "inspect" use
// it, so what inspect prints is what run registers.
package report

import (
	"context"
	"maps"

	"github.com/YoungBoyGod/remotegpu/agent/internal/collect"
	"github.com/YoungBoyGod/remotegpu/agent/internal/gpu"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// CPUMemorySource reads CPU and memory; *collect.Collector implements it.
type CPUMemorySource interface {
	Capacity() collect.Capacity
	Sample(ctx context.Context) (collect.Sample, error)
}

var _ CPUMemorySource = (*collect.Collector)(nil)

// Host describes this host and where its state comes from.
type Host struct {
	ID           string
	Name         string
	Address      string
	Labels       map[string]string
	AgentVersion string
	CPUMemory    CPUMemorySource
	GPUs         gpu.Backend
}

// Info returns the registration document. InstanceID and RegisteredAt are
// left for the heartbeat to set. The CPU and memory totals are the
// capacity offered, which cgroup limits may lower.
func (h *Host) Info() keyspace.HostInfo {
	capacity := h.CPUMemory.Capacity()
	gpus := h.GPUs.GPUs()
	if gpus == nil {
		gpus = []keyspace.GPUInfo{}
	}
	return keyspace.HostInfo{
		ID:           h.ID,
		Name:         h.Name,
		IPAddress:    h.Address,
		Labels:       maps.Clone(h.Labels),
		TotalCPU:     capacity.CPUs,
		TotalMemory:  capacity.MemoryBytes,
		GPUs:         gpus,
		AgentVersion: h.AgentVersion,
	}
}

// Status reads CPU, memory, load and every GPU. InstanceID and HeartbeatAt
// are left for the heartbeat to set.
func (h *Host) Status(ctx context.Context) (keyspace.HostStatus, error) {
	s, err := h.CPUMemory.Sample(ctx)
	if err != nil {
		return keyspace.HostStatus{}, err
	}
	gpus := h.GPUs.Sample()
	if gpus == nil {
		gpus = []keyspace.GPUStatus{}
	}
	return keyspace.HostStatus{
		CPUPercent:      s.CPUPercent,
		UsedMemory:      s.MemoryUsed,
		AvailableMemory: s.MemoryAvailable,
		Load1:           s.Load1,
		Load5:           s.Load5,
		Load15:          s.Load15,
		GPUs:            gpus,
	}, nil
}
