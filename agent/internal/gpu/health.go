package gpu

import "time"

// healthTracker decides whether one GPU is healthy from the faults seen so
// far. It is not safe for concurrent use; the owning device's mutex guards
// it.
type healthTracker struct {
	// period is how long a GPU stays unhealthy after its last fault.
	period time.Duration

	// lastFaultAt and lastFaultReason describe the most recent fault.
	lastFaultAt     time.Time
	lastFaultReason string
	// lastSeenAt is the last time a fault was observed: the event, or the
	// sample that found a condition gone. Recovery counts from it.
	lastSeenAt time.Time
	// active is set while the previous sample found a condition.
	active bool
}

// event records a one-off fault, such as an XID event.
func (h *healthTracker) event(now time.Time, reason string) {
	h.lastFaultAt, h.lastFaultReason, h.lastSeenAt = now, reason, now
}

// observe records the conditions found by one sample, joined into one
// reason, or "" when there are none. A condition found again keeps its
// start time; one that went away starts the recovery period now.
func (h *healthTracker) observe(now time.Time, reason string) {
	switch {
	case reason == "" && h.active:
		h.active, h.lastSeenAt = false, now
	case reason == "":
	case h.active && reason == h.lastFaultReason:
		h.lastSeenAt = now
	default:
		h.lastFaultAt, h.lastFaultReason, h.lastSeenAt = now, reason, now
		h.active = true
	}
}

// healthy reports whether no condition is present and no fault has been
// seen for the recovery period.
func (h *healthTracker) healthy(now time.Time) bool {
	if h.active {
		return false
	}
	return h.lastSeenAt.IsZero() || now.Sub(h.lastSeenAt) >= h.period
}
