package servertest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Select returns where Allocate would place req now.
func (f *Fleet) Select(_ context.Context, req api.AllocationRequest) (api.Selection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("Select"); err != nil {
		return api.Selection{}, err
	}
	h, gpus, err := f.placeLocked(req)
	if err != nil {
		return api.Selection{}, err
	}
	return api.Selection{Host: copyHost(h), GPUs: gpuRefs(h, gpus)}, nil
}

// Allocate places req on the first host that fits. A known idempotency key
// returns the allocation made for it, with created false.
func (f *Fleet) Allocate(_ context.Context,
	req api.AllocationRequest) (api.Allocation, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("Allocate"); err != nil {
		return api.Allocation{}, false, err
	}
	if id, ok := f.byKey[req.IdempotencyKey]; ok && req.IdempotencyKey != "" {
		return *f.allocs[id], false, nil
	}
	h, gpus, err := f.placeLocked(req)
	if err != nil {
		return api.Allocation{}, false, err
	}

	f.nextID++
	a := &api.Allocation{
		ID:             fmt.Sprintf("alloc-%d", f.nextID),
		HostID:         h.ID,
		HostName:       h.Name,
		HostAddress:    h.IPAddress,
		CPU:            req.CPU,
		Memory:         req.Memory,
		GPUs:           gpuRefs(h, gpus),
		Owner:          req.Owner,
		IdempotencyKey: req.IdempotencyKey,
		State:          keyspace.StateActive,
		CreatedAt:      f.now(),
		TTLSeconds:     req.TTLSeconds,
	}
	a.CUDAVisibleDevices = strings.Join(uuids(a.GPUs), ",")
	f.setExpiryLocked(a)
	f.takeLocked(h, a, gpus)
	f.allocs[a.ID] = a
	if req.IdempotencyKey != "" {
		f.byKey[req.IdempotencyKey] = a.ID
	}
	return *a, true, nil
}

// placeLocked checks req and returns the first fitting host and the indexes
// of the GPUs it would hand out.
func (f *Fleet) placeLocked(req api.AllocationRequest) (*api.Host, []int, error) {
	if req.CPU == 0 && req.Memory == 0 && req.GPU == 0 {
		return nil, nil, fmt.Errorf("%w: the request asks for nothing; set cpu, memory or gpu",
			service.ErrInvalid)
	}
	if req.IdempotencyKey != "" {
		if err := keyspace.ValidID(req.IdempotencyKey); err != nil {
			return nil, nil, fmt.Errorf("%w: idempotency_key: %v", service.ErrInvalid, err)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.hosts)) {
		h := f.hosts[id]
		if gpus, ok := fits(h, req); ok {
			return h, gpus, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: no host has %d CPUs, %d bytes of memory and %d GPUs free",
		service.ErrNoCapacity, req.CPU, req.Memory, req.GPU)
}

func fits(h *api.Host, req api.AllocationRequest) ([]int, bool) {
	if h.Health != api.HealthHealthy || h.Status != "active" {
		return nil, false
	}
	if h.TotalCPU-h.UsedCPU < req.CPU || h.TotalMemory-h.UsedMemory < req.Memory {
		return nil, false
	}
	for k, v := range req.Labels {
		if h.Labels[k] != v {
			return nil, false
		}
	}
	var gpus []int
	for i, g := range h.GPUs {
		if len(gpus) == req.GPU {
			break
		}
		if g.AllocationID != "" || g.Busy || g.Health != api.HealthHealthy {
			continue
		}
		if !contains(g.Name, req.GPUModel) || g.MemoryTotal < req.MinGPUMemory {
			continue
		}
		gpus = append(gpus, i)
	}
	return gpus, len(gpus) == req.GPU
}

func (f *Fleet) takeLocked(h *api.Host, a *api.Allocation, gpus []int) {
	h.UsedCPU += a.CPU
	h.UsedMemory += a.Memory
	h.UsedGPU += len(gpus)
	for _, i := range gpus {
		h.GPUs[i].AllocationID = a.ID
	}
}

func (f *Fleet) freeLocked(a *api.Allocation) {
	h, ok := f.hosts[a.HostID]
	if !ok {
		return
	}
	h.UsedCPU -= a.CPU
	h.UsedMemory -= a.Memory
	for i := range h.GPUs {
		if h.GPUs[i].AllocationID == a.ID {
			h.GPUs[i].AllocationID = ""
			h.UsedGPU--
		}
	}
}

func (f *Fleet) setExpiryLocked(a *api.Allocation) {
	if a.TTLSeconds == 0 {
		return
	}
	exp := f.now().Add(time.Duration(a.TTLSeconds) * time.Second)
	a.ExpiresAt = &exp
}

// ListAllocations returns the allocations that match filter, in ID order.
func (f *Fleet) ListAllocations(_ context.Context,
	filter service.AllocationFilter) ([]api.Allocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("ListAllocations"); err != nil {
		return nil, err
	}
	var out []api.Allocation
	for _, id := range slices.Sorted(maps.Keys(f.allocs)) {
		a := f.allocs[id]
		if (filter.HostID == "" || a.HostID == filter.HostID) &&
			(filter.Owner == "" || a.Owner == filter.Owner) &&
			(filter.State == "" || a.State == filter.State) {
			out = append(out, *a)
		}
	}
	return out, nil
}

// GetAllocation returns one allocation.
func (f *Fleet) GetAllocation(_ context.Context, allocID string) (api.Allocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("GetAllocation"); err != nil {
		return api.Allocation{}, err
	}
	a, err := f.allocLocked(allocID)
	if err != nil {
		return api.Allocation{}, err
	}
	return *a, nil
}

// Release frees an allocation; a second release returns it with
// AlreadyReleased set.
func (f *Fleet) Release(_ context.Context, allocID string) (api.Allocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("Release"); err != nil {
		return api.Allocation{}, err
	}
	a, err := f.allocLocked(allocID)
	if err != nil {
		return api.Allocation{}, err
	}
	if a.State == keyspace.StateReleased {
		out := *a
		out.AlreadyReleased = true
		return out, nil
	}
	if holdsResources(a.State) {
		f.freeLocked(a)
	}
	now := f.now()
	a.State = keyspace.StateReleased
	a.ReleasedAt = &now
	return *a, nil
}

// Renew moves an active allocation's expiry TTLSeconds past now.
func (f *Fleet) Renew(_ context.Context, allocID string) (api.Allocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("Renew"); err != nil {
		return api.Allocation{}, err
	}
	a, err := f.allocLocked(allocID)
	if err != nil {
		return api.Allocation{}, err
	}
	if a.State != keyspace.StateActive {
		return api.Allocation{}, fmt.Errorf("%w: allocation %q is %s; allocate a new one",
			service.ErrConflict, allocID, a.State)
	}
	f.setExpiryLocked(a)
	return *a, nil
}

func (f *Fleet) allocLocked(allocID string) (*api.Allocation, error) {
	a, ok := f.allocs[allocID]
	if !ok {
		return nil, fmt.Errorf("%w: allocation %q", service.ErrNotFound, allocID)
	}
	return a, nil
}

func gpuRefs(h *api.Host, idx []int) []api.AllocatedGPU {
	out := make([]api.AllocatedGPU, 0, len(idx))
	for _, i := range idx {
		out = append(out, api.AllocatedGPU{Index: h.GPUs[i].Index, UUID: h.GPUs[i].UUID})
	}
	return out
}

func uuids(gpus []api.AllocatedGPU) []string {
	out := make([]string, len(gpus))
	for i, g := range gpus {
		out[i] = g.UUID
	}
	return out
}
