package fleet

import (
	"sync/atomic"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Outcomes passed to Observer.AllocationFinished.
const (
	OutcomeCreated     = "created"
	OutcomeExisting    = "existing"
	OutcomeInvalid     = "invalid"
	OutcomeNoCapacity  = "no_capacity"
	OutcomeConflict    = "conflict"
	OutcomeUnavailable = "unavailable"
)

// Operations passed to Observer.CASConflict and Observer.EtcdError.
const (
	OpAllocate = "allocate"
	OpRelease  = "release"
	OpRenew    = "renew"
	OpExpire   = "expire"
	OpLost     = "lost"
	OpRestore  = "restore"
	OpDrain    = "drain"
	OpRemove   = "remove"
	OpRead     = "read"
	OpList     = "list"
	OpWatch    = "watch"
	OpLease    = "lease"
)

// OpRefreshExpiry is the operation that moves a record's expires_at to
// the end of its lease, passed like the operations above.
const OpRefreshExpiry = "refresh_expiry"

// Reasons passed to Observer.Relisted.
const (
	RelistCompacted = "compacted"
	RelistClosed    = "closed"
	RelistError     = "error"
)

// Observer receives the fleet's events, for example to export metrics.
// Methods are called synchronously, sometimes with the view's lock held,
// so they must be fast, must not block and must not call the Fleet.
type Observer interface {
	// HostHealthChanged is called once per health transition of a host;
	// from is "" for a host seen for the first time.
	HostHealthChanged(hostID, from, to string)
	// AllocationFinished is called once per Allocate call with one of
	// the Outcome values, the number of commit attempts and the latency.
	AllocationFinished(outcome string, attempts int, latency time.Duration)
	// CASConflict is called for each lost compare-and-swap, with one of
	// the Op values.
	CASConflict(op string)
	// Relisted is called after each list that follows a failed watch.
	Relisted(reason string)
	// EtcdError is called for each failed etcd call, with an Op value.
	EtcdError(op string)
}

// AllocationObserver is an optional extension of Observer: when
// Config.Observer also implements it, the fleet calls
// AllocationStateChanged once per allocation state change that this
// Fleet committed, for example from "active" to "expired". The same
// rules as for Observer apply.
type AllocationObserver interface {
	AllocationStateChanged(from, to, reason string)
}

// nopObserver is the Observer used when Config.Observer is nil.
type nopObserver struct{}

func (nopObserver) HostHealthChanged(string, string, string)      {}
func (nopObserver) AllocationFinished(string, int, time.Duration) {}
func (nopObserver) CASConflict(string)                            {}
func (nopObserver) Relisted(string)                               {}
func (nopObserver) EtcdError(string)                              {}

// counters are the running totals behind Stats.
type counters struct {
	allocationsCreated atomic.Uint64
	casConflicts       atomic.Uint64
	relists            atomic.Uint64
	etcdErrors         atomic.Uint64
	healthChanges      atomic.Uint64
	expired            atomic.Uint64
	lost               atomic.Uint64
	restored           atomic.Uint64
	lostReleased       atomic.Uint64
}

// Stats is a snapshot of the fleet's counters and gauges.
type Stats struct {
	// HostsByHealth counts registered hosts per api.Health* value.
	HostsByHealth map[string]int
	// AllocationsByState counts allocation records in the view per
	// keyspace.State* value.
	AllocationsByState map[string]int
	// AllocationsCreated counts allocations this Fleet committed.
	AllocationsCreated uint64
	// CASConflicts counts compare-and-swap transactions that lost.
	CASConflicts uint64
	// Relists counts lists after the first one, each after a failed
	// watch.
	Relists uint64
	// EtcdErrors counts failed etcd calls.
	EtcdErrors uint64
	// HealthChanges counts host health transitions, first sightings
	// excluded.
	HealthChanges uint64
	// AllocationsExpired counts allocations this Fleet expired.
	AllocationsExpired uint64
	// AllocationsLost counts allocations this Fleet marked lost.
	AllocationsLost uint64
	// AllocationsRestored counts lost allocations this Fleet made active
	// again after their host returned.
	AllocationsRestored uint64
	// LostReleased counts lost allocations this Fleet released after
	// Config.LostReleaseAfter.
	LostReleased uint64
	// Revision is the last etcd revision applied to the view.
	Revision int64
}

// Stats returns the current counters and gauges.
func (f *Fleet) Stats() Stats {
	s := Stats{
		HostsByHealth:       make(map[string]int),
		AllocationsByState:  make(map[string]int),
		AllocationsCreated:  f.counts.allocationsCreated.Load(),
		CASConflicts:        f.counts.casConflicts.Load(),
		Relists:             f.counts.relists.Load(),
		EtcdErrors:          f.counts.etcdErrors.Load(),
		HealthChanges:       f.counts.healthChanges.Load(),
		AllocationsExpired:  f.counts.expired.Load(),
		AllocationsLost:     f.counts.lost.Load(),
		AllocationsRestored: f.counts.restored.Load(),
		LostReleased:        f.counts.lostReleased.Load(),
	}

	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, h := range f.view.hosts {
		if h.info != nil {
			s.HostsByHealth[h.health.status]++
		}
	}
	for _, a := range f.view.allocs {
		s.AllocationsByState[a.rec.State]++
	}
	s.Revision = f.view.rev
	return s
}

// casConflict counts a lost compare-and-swap.
func (f *Fleet) casConflict(op string) {
	f.counts.casConflicts.Add(1)
	f.obs.CASConflict(op)
}

// isActiveState reports whether an allocation in state holds resources.
func isActiveState(state string) bool {
	return state == keyspace.StateActive || state == keyspace.StateLost
}

// stateChanged reports an allocation state change to an
// AllocationObserver, if the Observer is one.
func (f *Fleet) stateChanged(from, to, reason string) {
	if o, ok := f.obs.(AllocationObserver); ok {
		o.AllocationStateChanged(from, to, reason)
	}
}
