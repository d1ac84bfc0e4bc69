// Package servertest provides an in-memory service.Fleet for tests of the
// HTTP API, the Go client and the CLI. It keeps hosts and allocations in
// maps and places a request on the first host, in ID order, that fits. It
// has no etcd behind it, so tests of the allocator itself must use the real
// fleet package.
package servertest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Fleet is an in-memory service.Fleet. The zero value is not usable; create
// one with NewFleet. It is safe for concurrent use.
type Fleet struct {
	// mu guards every field below.
	mu       sync.Mutex
	now      func() time.Time
	ready    bool
	hosts    map[string]*api.Host
	allocs   map[string]*api.Allocation
	byKey    map[string]string
	nextID   int
	calls    map[string]int
	failures map[string][]error
}

var _ service.Fleet = (*Fleet)(nil)

// NewFleet returns an empty fleet that is ready and reads time from now
// (time.Now when nil).
func NewFleet(now func() time.Time) *Fleet {
	if now == nil {
		now = time.Now
	}
	return &Fleet{
		now:      now,
		ready:    true,
		hosts:    make(map[string]*api.Host),
		allocs:   make(map[string]*api.Allocation),
		byKey:    make(map[string]string),
		calls:    make(map[string]int),
		failures: make(map[string][]error),
	}
}

// AddHost adds or replaces a host. UsedCPU, UsedMemory and UsedGPU are
// kept as given, and GPUs with an AllocationID count as taken.
func (f *Fleet) AddHost(h api.Host) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h.GPUs = slices.Clone(h.GPUs)
	h.TotalGPU = len(h.GPUs)
	if h.Status == "" {
		h.Status = "active"
	}
	if h.Health == "" {
		h.Health = api.HealthHealthy
	}
	f.hosts[h.ID] = &h
}

// SetReady sets what Ready returns.
func (f *Fleet) SetReady(ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready = ready
}

// FailNext makes the next len(errs) calls of method (for example
// "Allocate") return errs in order instead of doing their work.
func (f *Fleet) FailNext(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = append(f.failures[method], errs...)
}

// Calls returns how often method was called, failed calls included.
func (f *Fleet) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// enterLocked counts a call and pops an injected failure for it.
func (f *Fleet) enterLocked(method string) error {
	f.calls[method]++
	queue := f.failures[method]
	if len(queue) == 0 {
		return nil
	}
	f.failures[method] = queue[1:]
	return queue[0]
}

// Ready reports the value last given to SetReady, true at first.
func (f *Fleet) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Ready"]++
	return f.ready
}

// ListHosts returns every host in ID order.
func (f *Fleet) ListHosts(_ context.Context) ([]api.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("ListHosts"); err != nil {
		return nil, err
	}
	var out []api.Host
	for _, id := range slices.Sorted(maps.Keys(f.hosts)) {
		out = append(out, copyHost(f.hosts[id]))
	}
	return out, nil
}

// GetHost returns one host.
func (f *Fleet) GetHost(_ context.Context, hostID string) (api.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("GetHost"); err != nil {
		return api.Host{}, err
	}
	h, err := f.hostLocked(hostID)
	if err != nil {
		return api.Host{}, err
	}
	return copyHost(h), nil
}

// HostHealth returns a host's health as of now.
func (f *Fleet) HostHealth(_ context.Context, hostID string) (api.HostHealth, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("HostHealth"); err != nil {
		return api.HostHealth{}, err
	}
	h, err := f.hostLocked(hostID)
	if err != nil {
		return api.HostHealth{}, err
	}
	return api.HostHealth{
		HostID:        h.ID,
		Health:        h.Health,
		Message:       h.HealthMessage,
		LastHeartbeat: h.LastHeartbeat,
		CheckedAt:     f.now(),
	}, nil
}

// Drain marks a host as draining.
func (f *Fleet) Drain(_ context.Context, hostID string) (api.Host, error) {
	return f.setStatus("Drain", hostID, "draining")
}

// Undrain marks a host as active again.
func (f *Fleet) Undrain(_ context.Context, hostID string) (api.Host, error) {
	return f.setStatus("Undrain", hostID, "active")
}

func (f *Fleet) setStatus(method, hostID, status string) (api.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked(method); err != nil {
		return api.Host{}, err
	}
	h, err := f.hostLocked(hostID)
	if err != nil {
		return api.Host{}, err
	}
	h.Status = status
	return copyHost(h), nil
}

// RemoveHost deletes a host that is not healthy and has no allocation.
func (f *Fleet) RemoveHost(_ context.Context, hostID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enterLocked("RemoveHost"); err != nil {
		return err
	}
	h, err := f.hostLocked(hostID)
	if err != nil {
		return err
	}
	if h.Health == api.HealthHealthy {
		return fmt.Errorf("%w: host %q is healthy; stop its agent first",
			service.ErrConflict, hostID)
	}
	for _, a := range f.allocs {
		if a.HostID == hostID && holdsResources(a.State) {
			return fmt.Errorf("%w: host %q has allocation %q; release it first",
				service.ErrConflict, hostID, a.ID)
		}
	}
	delete(f.hosts, hostID)
	return nil
}

func (f *Fleet) hostLocked(hostID string) (*api.Host, error) {
	h, ok := f.hosts[hostID]
	if !ok {
		return nil, fmt.Errorf("%w: host %q", service.ErrNotFound, hostID)
	}
	return h, nil
}

func copyHost(h *api.Host) api.Host {
	c := *h
	c.GPUs = slices.Clone(h.GPUs)
	c.Labels = maps.Clone(h.Labels)
	return c
}

func holdsResources(state string) bool {
	return state == keyspace.StateActive || state == keyspace.StateLost
}

// contains reports whether name contains model, ignoring case.
func contains(name, model string) bool {
	return strings.Contains(strings.ToLower(name), strings.ToLower(model))
}
