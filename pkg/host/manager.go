package host

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// HostManager is an in-memory registry of hosts that selects and reserves
// resources on them. Every method is safe for concurrent use, every
// method that returns a host returns a copy, and stored hosts are copies
// of what callers pass in, so no caller can change the manager's state
// except through its methods.
//
// A host is eligible for SelectHost and Allocate when its Status is
// StatusActive, its last known health is not HealthUnhealthy (a host that
// was never checked counts as eligible) and it has enough free resources.
type HostManager struct {
	selector HostSelector
	monitor  *HealthMonitor
	// checker runs the on-demand checks of GetHealthStatus.
	checker HealthChecker

	// mu guards the fields below. Stored HostInfo values change only
	// under the write lock, so selectors may read them under the read
	// lock.
	mu    sync.RWMutex
	hosts map[string]*hostEntry
	// candidates contains the stored HostInfo of every host that is
	// active and not unhealthy, in no particular order. It is the slice
	// handed to the selector, kept up to date on every change so that a
	// selection costs no allocation per host.
	candidates []*HostInfo
}

// hostEntry is the manager's record of one host.
type hostEntry struct {
	info *HostInfo
	// health is the latest result; hasHealth is false until the first
	// result is recorded.
	health    HealthCheckResult
	hasHealth bool
	// candidateIndex is the entry's position in HostManager.candidates,
	// or -1 when the host is not a candidate.
	candidateIndex int
}

// NewHostManager returns an empty manager that picks hosts with selector;
// a nil selector means NewLeastUsedSelector().
//
// When healthMonitor is not nil, the manager attaches itself to it, so
// the monitor's rounds check the hosts registered in this manager, and
// on-demand checks use the monitor's checker. A monitor attached to a
// second manager checks only the second one. The caller starts and stops
// the monitor.
//
// When healthMonitor is nil, health changes only through SetHealth and
// the first GetHealthStatus of each host, which runs a
// SimpleHealthChecker with DefaultHealthCheckTimeout.
func NewHostManager(
	selector HostSelector, healthMonitor *HealthMonitor,
) *HostManager {
	if selector == nil {
		selector = NewLeastUsedSelector()
	}

	m := &HostManager{
		selector: selector,
		monitor:  healthMonitor,
		hosts:    make(map[string]*hostEntry),
	}
	if healthMonitor != nil {
		m.checker = healthMonitor.checker
		healthMonitor.attach(m)
	} else {
		m.checker = NewSimpleHealthChecker(DefaultHealthCheckTimeout)
	}
	return m
}

// RegisterHost stores a copy of info. It returns an error wrapping
// ErrInvalidHost when info fails HostInfo.Validate, and one wrapping
// ErrHostExists when the ID is already registered.
func (m *HostManager) RegisterHost(info *HostInfo) error {
	if err := info.Validate(); err != nil {
		return fmt.Errorf("register host: %w", err)
	}
	stored := info.Clone()

	m.mu.Lock()
	defer m.mu.Unlock()

	if _, ok := m.hosts[stored.ID]; ok {
		return fmt.Errorf("register host %q: %w", stored.ID, ErrHostExists)
	}
	m.insertLocked(stored)
	return nil
}

// UpsertHost stores a copy of info, replacing the host with the same ID
// if there is one. The used amounts become those of info, replacing any
// reservations made through Allocate, and a replaced host keeps its last
// health result. It returns an error wrapping ErrInvalidHost when info
// fails HostInfo.Validate.
func (m *HostManager) UpsertHost(info *HostInfo) error {
	if err := info.Validate(); err != nil {
		return fmt.Errorf("upsert host: %w", err)
	}
	stored := info.Clone()

	m.mu.Lock()
	defer m.mu.Unlock()

	e, ok := m.hosts[stored.ID]
	if !ok {
		m.insertLocked(stored)
		return nil
	}
	e.info = stored
	m.syncCandidateLocked(e)
	return nil
}

// insertLocked adds a new entry for info. The caller holds mu for
// writing and has checked that the ID is free.
func (m *HostManager) insertLocked(info *HostInfo) {
	e := &hostEntry{info: info, candidateIndex: -1}
	m.hosts[info.ID] = e
	m.syncCandidateLocked(e)
}

// UnregisterHost removes the host and its health results. It returns an
// error wrapping ErrHostNotFound when no such host is registered.
func (m *HostManager) UnregisterHost(hostID string) error {
	m.mu.Lock()
	e, ok := m.hosts[hostID]
	if ok {
		m.removeCandidateLocked(e)
		delete(m.hosts, hostID)
	}
	m.mu.Unlock()

	if !ok {
		return fmt.Errorf("unregister host %q: %w", hostID, ErrHostNotFound)
	}
	if m.monitor != nil {
		m.monitor.forget(hostID)
	}
	return nil
}

// GetHost returns a copy of the host. It returns an error wrapping
// ErrHostNotFound when no such host is registered.
func (m *HostManager) GetHost(hostID string) (*HostInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()

	e, ok := m.hosts[hostID]
	if !ok {
		return nil, fmt.Errorf("get host %q: %w", hostID, ErrHostNotFound)
	}
	return e.info.Clone(), nil
}

// ListHosts returns copies of all registered hosts, sorted by ID.
func (m *HostManager) ListHosts() []*HostInfo {
	m.mu.RLock()
	out := make([]*HostInfo, 0, len(m.hosts))
	for _, e := range m.hosts {
		out = append(out, e.info.Clone())
	}
	m.mu.RUnlock()

	slices.SortFunc(out, func(a, b *HostInfo) int {
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Len returns the number of registered hosts.
func (m *HostManager) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.hosts)
}

// isCandidate reports whether the entry may be handed to the selector:
// active, and not unhealthy by its last result.
func (e *hostEntry) isCandidate() bool {
	unhealthy := e.hasHealth && e.health.Status == HealthUnhealthy
	return e.info.isActive() && !unhealthy
}

// syncCandidateLocked adds e to or removes it from candidates after its
// info or health changed. The caller holds mu for writing.
func (m *HostManager) syncCandidateLocked(e *hostEntry) {
	switch want := e.isCandidate(); {
	case want && e.candidateIndex < 0:
		e.candidateIndex = len(m.candidates)
		m.candidates = append(m.candidates, e.info)
	case want:
		// UpsertHost may have replaced the stored pointer.
		m.candidates[e.candidateIndex] = e.info
	case e.candidateIndex >= 0:
		m.removeCandidateLocked(e)
	}
}

// removeCandidateLocked removes e from candidates, if present, by moving
// the last candidate into its place. The caller holds mu for writing.
func (m *HostManager) removeCandidateLocked(e *hostEntry) {
	i := e.candidateIndex
	if i < 0 {
		return
	}

	last := len(m.candidates) - 1
	if i != last {
		moved := m.candidates[last]
		m.candidates[i] = moved
		m.hosts[moved.ID].candidateIndex = i
	}
	m.candidates[last] = nil
	m.candidates = m.candidates[:last]
	e.candidateIndex = -1
}
