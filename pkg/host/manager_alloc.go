package host

import (
	"fmt"
	"strings"
)

// SelectHost returns a copy of the host the selector picks for req among
// the eligible hosts, without reserving anything. Another caller may take
// the same resources before the caller reserves them; use Allocate to
// select and reserve in one step.
//
// It returns an error wrapping ErrInvalidRequirement for a negative
// field, and one wrapping ErrNoHostAvailable that gives the reason no
// host fits. The shortfall in that message counts only hosts that are
// active and not unhealthy.
func (m *HostManager) SelectHost(req ResourceRequirement) (*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("select host: %w", err)
	}

	m.mu.RLock()
	defer m.mu.RUnlock()

	e, err := m.selectLocked(req)
	if err != nil {
		return nil, fmt.Errorf("select host for %s: %w", req, err)
	}
	return e.info.Clone(), nil
}

// RankHosts returns copies of all eligible hosts for req, best first, when
// the selector implements HostRanker, and otherwise a one-element slice
// with the host SelectHost would return. Errors are those of SelectHost.
func (m *HostManager) RankHosts(req ResourceRequirement) ([]*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("rank hosts: %w", err)
	}

	m.mu.RLock()
	defer m.mu.RUnlock()

	ranker, ok := m.selector.(HostRanker)
	if !ok {
		e, err := m.selectLocked(req)
		if err != nil {
			return nil, fmt.Errorf("rank hosts for %s: %w", req, err)
		}
		return []*HostInfo{e.info.Clone()}, nil
	}

	if len(m.candidates) == 0 {
		return nil, fmt.Errorf("rank hosts for %s: %w",
			req, m.noCandidateErrorLocked())
	}
	ranked, err := ranker.Rank(m.candidates, req)
	if err != nil {
		return nil, fmt.Errorf("rank hosts for %s: %w", req, err)
	}

	// Copy from the manager's own records, because a custom ranker may
	// return the stored pointers it was given.
	out := make([]*HostInfo, 0, len(ranked))
	for _, h := range ranked {
		if e, ok := m.hosts[h.ID]; ok {
			out = append(out, e.info.Clone())
		}
	}
	return out, nil
}

// Allocate selects a host for req and reserves req on it under one lock,
// and returns a copy of the host with the reservation applied. Two
// concurrent calls never reserve the same resources, unlike SelectHost
// followed by UpdateHostResources, between which another caller can take
// the last free GPU. Errors are those of SelectHost.
func (m *HostManager) Allocate(req ResourceRequirement) (*HostInfo, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("allocate: %w", err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()

	e, err := m.selectLocked(req)
	if err != nil {
		return nil, fmt.Errorf("allocate %s: %w", req, err)
	}
	if err := reserveLocked(e.info, req); err != nil {
		return nil, fmt.Errorf("allocate %s: %w", req, err)
	}
	return e.info.Clone(), nil
}

// Release frees req on the host, undoing an Allocate. It returns an error
// wrapping ErrInvalidRequirement for a negative field, ErrHostNotFound for
// an unregistered host, and ErrReleaseExceedsUsage when req exceeds what
// the host has in use. On error nothing changes.
func (m *HostManager) Release(hostID string, req ResourceRequirement) error {
	return m.UpdateHostResources(hostID, req.CPU, req.Memory, req.GPU, false)
}

// UpdateHostResources reserves (add true) or frees (add false) the given
// cores, bytes of memory and GPUs on the host. The change applies to all
// three resources or to none. It returns an error wrapping
// ErrInvalidRequirement for a negative amount, ErrHostNotFound for an
// unregistered host, ErrInsufficientResources when a reservation exceeds
// the free amount, and ErrReleaseExceedsUsage when a release exceeds the
// amount in use. It does not check status or health; Allocate does.
func (m *HostManager) UpdateHostResources(
	hostID string, cpu int, memory int64, gpu int, add bool,
) error {
	req := ResourceRequirement{CPU: cpu, Memory: memory, GPU: gpu}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("update resources of host %q: %w", hostID, err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()

	e, ok := m.hosts[hostID]
	if !ok {
		return fmt.Errorf("update resources of host %q: %w",
			hostID, ErrHostNotFound)
	}
	if add {
		return reserveLocked(e.info, req)
	}
	return releaseLocked(e.info, req)
}

// selectLocked runs the selector over the candidates and returns the
// chosen host's entry. The caller holds mu, for reading or writing, and has
// validated req.
func (m *HostManager) selectLocked(req ResourceRequirement) (*hostEntry, error) {
	if len(m.candidates) == 0 {
		return nil, m.noCandidateErrorLocked()
	}

	picked, err := m.selector.Select(m.candidates, req)
	if err != nil {
		return nil, err
	}

	// Guard against a custom selector that returns a host it was not
	// given or one that does not fit.
	e, ok := m.hosts[picked.ID]
	if !ok || e.candidateIndex < 0 || !e.info.CanAllocate(req) {
		return nil, fmt.Errorf("selector returned host %q, "+
			"which is not an eligible candidate", picked.ID)
	}
	return e, nil
}

// noCandidateErrorLocked explains why no host is a candidate at all. The
// caller holds mu.
func (m *HostManager) noCandidateErrorLocked() error {
	if len(m.hosts) == 0 {
		return fmt.Errorf("%w: no hosts registered", ErrNoHostAvailable)
	}

	inactive, unhealthy := 0, 0
	for _, e := range m.hosts {
		if !e.info.isActive() {
			inactive++
		} else {
			unhealthy++
		}
	}
	return fmt.Errorf("%w: none of %d registered hosts is eligible "+
		"(%d not active, %d unhealthy)",
		ErrNoHostAvailable, len(m.hosts), inactive, unhealthy)
}

// reserveLocked adds req to the host's usage if every resource has enough
// free, and otherwise changes nothing and names each shortfall. The
// caller holds the manager's write lock.
func reserveLocked(h *HostInfo, req ResourceRequirement) error {
	problems := exceeding(req, h.AvailableResources(), "requested %s, only %s free")
	if len(problems) > 0 {
		return fmt.Errorf("reserve on host %q: %s: %w", h.ID,
			strings.Join(problems, "; "), ErrInsufficientResources)
	}

	h.UsedCPU += req.CPU
	h.UsedMemory += req.Memory
	h.UsedGPU += req.GPU
	return nil
}

// exceeding describes each resource of req that is above limit, with
// format applied to the amount in req and the quantity in limit.
func exceeding(req, limit ResourceRequirement, format string) []string {
	var problems []string
	for _, res := range allResources {
		want, have := req.amount(res), limit.amount(res)
		if want > have {
			problems = append(problems, fmt.Sprintf(format,
				res.describe(want), res.quantity(have)))
		}
	}
	return problems
}

// releaseLocked subtracts req from the host's usage if every resource has
// that much in use, and otherwise changes nothing and names each excess.
// The caller holds the manager's write lock.
func releaseLocked(h *HostInfo, req ResourceRequirement) error {
	problems := exceeding(req, h.used(), "releasing %s, only %s in use")
	if len(problems) > 0 {
		return fmt.Errorf("release on host %q: %s: %w", h.ID,
			strings.Join(problems, "; "), ErrReleaseExceedsUsage)
	}

	h.UsedCPU -= req.CPU
	h.UsedMemory -= req.Memory
	h.UsedGPU -= req.GPU
	return nil
}
