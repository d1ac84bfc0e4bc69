package fleet

import (
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// view is the decoded content of the keyspace at revision rev. Its
// methods do not lock; the Fleet's mu guards the view.
type view struct {
	ks     keyspace.Keyspace
	rev    int64
	hosts  map[string]*hostState
	allocs map[string]allocEntry
	idem   map[string]idemEntry
	// leases maps the ID of each allocation whose lease key exists to
	// that key's etcd lease.
	leases map[string]leaseEntry
}

// hostState is the view's record of one host. A document that did not
// decode is nil with its error kept, and its revision still counts.
type hostState struct {
	id string

	info    *keyspace.HostInfo
	infoRev int64

	// status is present when statusRev > 0; statusErr is set when the
	// key holds an invalid document.
	status    *keyspace.HostStatus
	statusRev int64
	statusErr error
	// statusGPUsDistinct is set when no UUID appears twice in
	// status.GPUs, which lets liveGPU trust a match at the expected
	// position.
	statusGPUsDistinct bool

	// ledger is never nil: an absent or invalid ledger is empty.
	ledger    *keyspace.Ledger
	ledgerRev int64
	ledgerErr error

	// Liveness as this coordinator saw it, on its own clock.
	statusSeen bool
	lastSeenAt time.Time
	lostAt     time.Time
	// agentHeartbeatAt is the agent's own timestamp, for display.
	agentHeartbeatAt time.Time

	// health and draining are the last reported state, used to detect
	// transitions.
	health   healthState
	draining bool
	// downSince is when this coordinator first saw the host registered
	// without a status key, on its own clock; zero while the key exists.
	downSince time.Time
}

// allocEntry is one allocation record and its ModRevision.
type allocEntry struct {
	rec *keyspace.Allocation
	rev int64
}

// leaseEntry is one allocation lease key's lease and ModRevision.
type leaseEntry struct {
	lease int64
	rev   int64
}

// idemEntry is one idempotency key's allocation ID and its ModRevision.
type idemEntry struct {
	allocID string
	rev     int64
}

func newView(ks keyspace.Keyspace) *view {
	return &view{
		ks:     ks,
		hosts:  make(map[string]*hostState),
		allocs: make(map[string]allocEntry),
		idem:   make(map[string]idemEntry),
		leases: make(map[string]leaseEntry),
	}
}

func newHostState(id string) *hostState {
	return &hostState{id: id, ledger: emptyLedger()}
}

func emptyLedger() *keyspace.Ledger {
	return &keyspace.Ledger{Allocations: map[string]keyspace.LedgerEntry{}}
}

// host returns the state of hostID, creating it when absent.
func (v *view) host(hostID string) *hostState {
	h, ok := v.hosts[hostID]
	if !ok {
		h = newHostState(hostID)
		v.hosts[hostID] = h
	}
	return h
}

// put applies a put of kv. It returns the host the key belongs to ("" for
// other keys) and an error when the key or its value is invalid. The view
// then treats the key as absent or, for host keys, as invalid.
func (v *view) put(kv *mvccpb.KeyValue, now time.Time) (string, error) {
	key := string(kv.Key)
	pk, err := v.ks.ParseKey(key)
	if err != nil {
		return "", err
	}

	switch pk.Kind {
	case keyspace.KindHostInfo:
		return pk.ID, v.host(pk.ID).putInfo(key, kv)
	case keyspace.KindHostStatus:
		return pk.ID, v.host(pk.ID).putStatus(key, kv, now)
	case keyspace.KindHostLedger:
		return pk.ID, v.host(pk.ID).putLedger(key, kv)
	case keyspace.KindAllocation:
		return "", v.putAllocation(pk.ID, key, kv)
	case keyspace.KindIdempotency:
		return "", v.putIdempotency(key, pk.ID, kv)
	case keyspace.KindAllocationLease:
		if old, ok := v.leases[pk.ID]; !ok || kv.ModRevision > old.rev {
			v.leases[pk.ID] = leaseEntry{lease: kv.Lease, rev: kv.ModRevision}
		}
		return "", nil
	}
	return "", fmt.Errorf("key %q: %w", key, keyspace.ErrUnknownKey)
}

func (h *hostState) putInfo(key string, kv *mvccpb.KeyValue) error {
	if kv.ModRevision <= h.infoRev {
		return nil
	}
	h.infoRev = kv.ModRevision

	info, err := keyspace.DecodeHostInfo(key, kv.Value)
	if err == nil && info.ID != h.id {
		err = fmt.Errorf("%w at %q: id is %q, but the key names host %q",
			keyspace.ErrInvalidDocument, key, info.ID, h.id)
	}
	if err != nil {
		h.info = nil
		return err
	}
	h.info = info
	return nil
}

func (h *hostState) putStatus(
	key string, kv *mvccpb.KeyValue, now time.Time,
) error {
	if kv.ModRevision <= h.statusRev {
		return nil
	}

	st, err := keyspace.DecodeHostStatus(key, kv.Value)
	if err == nil && kv.Lease == 0 {
		// Only a live lease proves that an agent is running; a status
		// written by hand without one would keep the host healthy forever.
		st, err = nil, fmt.Errorf("%w at %q: the key has no lease, so "+
			"no agent keeps it alive; delete it or restart the agent",
			keyspace.ErrInvalidDocument, key)
	}
	h.setStatus(kv.ModRevision, st, err, now)
	return err
}

// setStatus records the status key at revision rev, seen at now, as
// decoded to st or rejected with err.
func (h *hostState) setStatus(
	rev int64, st *keyspace.HostStatus, err error, now time.Time,
) {
	h.statusRev = rev
	h.statusSeen = true
	h.lastSeenAt = now
	h.lostAt = time.Time{}
	h.status, h.statusErr = st, err
	h.statusGPUsDistinct = st != nil && distinctGPUs(st.GPUs)
	if err == nil {
		h.agentHeartbeatAt = st.HeartbeatAt
	}
}

func (h *hostState) putLedger(key string, kv *mvccpb.KeyValue) error {
	if kv.ModRevision <= h.ledgerRev {
		return nil
	}
	h.ledgerRev = kv.ModRevision

	l, err := keyspace.DecodeLedger(key, kv.Value)
	if err != nil {
		h.ledger, h.ledgerErr = emptyLedger(), err
		return err
	}
	h.ledger, h.ledgerErr = l, nil
	return nil
}

func (v *view) putAllocation(
	allocID, key string, kv *mvccpb.KeyValue,
) error {
	if old, ok := v.allocs[allocID]; ok && kv.ModRevision <= old.rev {
		return nil
	}
	rec, err := keyspace.DecodeAllocation(key, kv.Value)
	if err == nil && rec.ID != allocID {
		err = fmt.Errorf("%w at %q: id is %q, but the key names %q",
			keyspace.ErrInvalidDocument, key, rec.ID, allocID)
	}
	if err != nil {
		delete(v.allocs, allocID)
		return err
	}
	v.allocs[allocID] = allocEntry{rec: rec, rev: kv.ModRevision}
	return nil
}

func (v *view) putIdempotency(
	key, requestKey string, kv *mvccpb.KeyValue,
) error {
	if old, ok := v.idem[requestKey]; ok && kv.ModRevision <= old.rev {
		return nil
	}
	allocID := string(kv.Value)
	if err := keyspace.ValidID(allocID); err != nil {
		delete(v.idem, requestKey)
		return fmt.Errorf("%w at %q: allocation %v",
			keyspace.ErrInvalidDocument, key, err)
	}
	v.idem[requestKey] = idemEntry{allocID: allocID, rev: kv.ModRevision}
	return nil
}

// remove applies a delete of key at rev and returns the host the key
// belongs to, or "". Deletes of keys the view does not hold, or holds at
// a later revision, change nothing.
func (v *view) remove(key string, rev int64, now time.Time) string {
	pk, err := v.ks.ParseKey(key)
	if err != nil {
		return ""
	}

	switch pk.Kind {
	case keyspace.KindAllocation:
		if e, ok := v.allocs[pk.ID]; ok && e.rev < rev {
			delete(v.allocs, pk.ID)
		}
		return ""
	case keyspace.KindIdempotency:
		if e, ok := v.idem[pk.ID]; ok && e.rev < rev {
			delete(v.idem, pk.ID)
		}
		return ""
	case keyspace.KindAllocationLease:
		if e, ok := v.leases[pk.ID]; ok && e.rev < rev {
			delete(v.leases, pk.ID)
		}
		return ""
	}

	h, ok := v.hosts[pk.ID]
	if !ok {
		return ""
	}
	switch pk.Kind {
	case keyspace.KindHostInfo:
		if h.infoRev > 0 && h.infoRev < rev {
			h.info, h.infoRev = nil, 0
		}
	case keyspace.KindHostStatus:
		if h.statusRev > 0 && h.statusRev < rev {
			h.status, h.statusRev, h.statusErr = nil, 0, nil
			h.lostAt = now
		}
	case keyspace.KindHostLedger:
		if h.ledgerRev > 0 && h.ledgerRev < rev {
			h.ledger, h.ledgerRev, h.ledgerErr = emptyLedger(), 0, nil
		}
	}
	return pk.ID
}

// empty reports whether none of the host's keys exists.
func (h *hostState) empty() bool {
	return h.infoRev == 0 && h.statusRev == 0 && h.ledgerRev == 0
}

// carryLiveness copies what this coordinator observed about each host
// from old, the view before a re-list, into v, built from the list. A
// status key present in both at the same revision keeps its first
// sighting time; one that vanished during the gap counts as lost now.
func (v *view) carryLiveness(old *view, now time.Time) {
	for id, h := range v.hosts {
		prev, ok := old.hosts[id]
		if !ok {
			continue
		}
		h.health, h.draining = prev.health, prev.draining
		h.downSince = prev.downSince
		switch {
		case h.statusRev > 0 && h.statusRev == prev.statusRev:
			h.lastSeenAt = prev.lastSeenAt
		case h.statusRev == 0 && prev.statusSeen:
			h.statusSeen = true
			h.lastSeenAt = prev.lastSeenAt
			h.agentHeartbeatAt = prev.agentHeartbeatAt
			h.lostAt = prev.lostAt
			if prev.statusRev > 0 {
				h.lostAt = now
			}
		}
	}
}
