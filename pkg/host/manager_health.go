package host

import (
	"context"
	"fmt"
)

// snapshotHosts returns copies of all registered hosts for a monitor
// round.
func (m *HostManager) snapshotHosts() []*HostInfo {
	return m.ListHosts()
}

// recordHealth stores a monitor's result unless the host is gone or
// already has a newer result.
func (m *HostManager) recordHealth(result HealthCheckResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.hosts[result.HostID]; ok {
		m.setHealthLocked(e, result)
	}
}

// setHealthLocked stores result on e unless e already has a result with a
// later CheckedAt, so a slow check cannot overwrite a newer one. The
// caller holds mu for writing.
func (m *HostManager) setHealthLocked(e *hostEntry, result HealthCheckResult) {
	if e.hasHealth && result.CheckedAt.Before(e.health.CheckedAt) {
		return
	}
	e.health, e.hasHealth = result, true
	m.syncCandidateLocked(e)
}

// SetHealth records a result computed elsewhere, for example by a
// coordinator that judges liveness from its own leases. A zero CheckedAt
// is replaced by the current time, and a result older than the stored one
// is ignored. It returns an error wrapping ErrHostNotFound for an
// unregistered host, and an error for a status other than HealthHealthy,
// HealthUnhealthy or HealthUnknown.
func (m *HostManager) SetHealth(result HealthCheckResult) error {
	if !result.Status.valid() {
		return fmt.Errorf("set health of host %q: invalid status %q, "+
			"want %q, %q or %q", result.HostID, result.Status,
			HealthHealthy, HealthUnhealthy, HealthUnknown)
	}
	result = normalizeResult(result, result.HostID)

	m.mu.Lock()
	defer m.mu.Unlock()

	e, ok := m.hosts[result.HostID]
	if !ok {
		return fmt.Errorf("set health of host %q: %w",
			result.HostID, ErrHostNotFound)
	}
	m.setHealthLocked(e, result)
	return nil
}

// GetHealthStatus returns a copy of the latest health result of the host.
// When the host has no result yet, it runs the manager's checker on a
// copy of the host first, records the result and returns it, so a call
// right after RegisterHost returns a result. It returns an error
// wrapping ErrHostNotFound when no such host is registered.
func (m *HostManager) GetHealthStatus(hostID string) (*HealthCheckResult, error) {
	m.mu.RLock()
	e, ok := m.hosts[hostID]
	var snapshot *HostInfo
	if ok && e.hasHealth {
		result := e.health
		m.mu.RUnlock()
		return &result, nil
	}
	if ok {
		snapshot = e.info.Clone()
	}
	m.mu.RUnlock()

	if !ok {
		return nil, fmt.Errorf("get health of host %q: %w",
			hostID, ErrHostNotFound)
	}

	// Check without holding mu: a checker may be slow or call back into
	// the manager.
	result := m.checker.Check(context.Background(), snapshot)
	result = normalizeResult(result, hostID)

	m.mu.Lock()
	defer m.mu.Unlock()

	e, ok = m.hosts[hostID]
	if !ok {
		return nil, fmt.Errorf("get health of host %q: %w",
			hostID, ErrHostNotFound)
	}
	m.setHealthLocked(e, result)
	stored := e.health
	return &stored, nil
}
