package harness

import (
	"encoding/json"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// gpuHolder is the allocation that holds a GPU.
type gpuHolder struct {
	hostID  string
	allocID string
}

// decode sorts the keys into a snapshot and reports every document that
// does not decode. Keys outside the layout are not remotegpu's and are
// skipped.
func (r *InvariantReport) decode(ks keyspace.Keyspace,
	kvs []*mvccpb.KeyValue) *snapshot {
	s := &snapshot{
		infos:      make(map[string]*keyspace.HostInfo),
		live:       make(map[string]bool),
		ledgers:    make(map[string]*keyspace.Ledger),
		badLedgers: make(map[string]bool),
		records:    make(map[string]*keyspace.Allocation),
		entryHosts: make(map[string][]string),
		gpuHolders: make(map[string]gpuHolder),
	}
	for _, kv := range kvs {
		key := string(kv.Key)
		pk, err := ks.ParseKey(key)
		if err != nil {
			continue
		}
		switch pk.Kind {
		case keyspace.KindHostInfo:
			r.decodeInfo(s, pk.ID, key, kv.Value)
		case keyspace.KindHostStatus:
			s.live[pk.ID] = true
		case keyspace.KindHostLedger:
			r.decodeLedger(s, pk.ID, key, kv.Value)
		case keyspace.KindAllocation:
			r.decodeRecord(s, pk.ID, key, kv.Value)
		}
	}
	return s
}

func (r *InvariantReport) decodeInfo(s *snapshot, hostID, key string,
	data []byte) {
	info, err := keyspace.DecodeHostInfo(key, data)
	if err != nil {
		r.add(ViolationInvalidDocument, hostID, "", "%v", err)
		return
	}
	if info.ID != hostID {
		r.add(ViolationInvalidDocument, hostID, "",
			"info at %q has id %q", key, info.ID)
		return
	}
	s.infos[hostID] = info
}

// decodeLedger parses a ledger without keyspace's validation, so that
// checkLedger can name each problem before it validates.
func (r *InvariantReport) decodeLedger(s *snapshot, hostID, key string,
	data []byte) {
	l := &keyspace.Ledger{}
	if len(data) > 0 {
		if err := json.Unmarshal(data, l); err != nil {
			r.add(ViolationInvalidDocument, hostID, "",
				"ledger at %q: %v", key, err)
			s.badLedgers[hostID] = true
			return
		}
	}
	if l.Allocations == nil {
		l.Allocations = make(map[string]keyspace.LedgerEntry)
	}
	s.ledgers[hostID] = l
	for id := range l.Allocations {
		s.entryHosts[id] = append(s.entryHosts[id], hostID)
	}
}

func (r *InvariantReport) decodeRecord(s *snapshot, allocID, key string,
	data []byte) {
	a, err := keyspace.DecodeAllocation(key, data)
	if err != nil {
		r.add(ViolationInvalidDocument, "", allocID, "%v", err)
		return
	}
	if a.ID != allocID {
		r.add(ViolationRecordMismatch, a.HostID, allocID,
			"record at %q has id %q", key, a.ID)
	}
	s.records[allocID] = a
}

// checkLedger checks one host's ledger against its info and the records.
func (r *InvariantReport) checkLedger(s *snapshot, hostID string) {
	l := s.ledgers[hostID]
	r.LedgerEntries += len(l.Allocations)

	info := s.infos[hostID]
	if info == nil && len(l.Allocations) > 0 {
		r.add(ViolationMissingInfo, hostID, "",
			"ledger holds %d allocations, but the host has no info",
			len(l.Allocations))
	}
	if info != nil {
		r.checkCapacity(hostID, info, l)
	}
	for _, id := range slices.Sorted(maps.Keys(l.Allocations)) {
		entry := l.Allocations[id]
		r.checkEntryGPUs(s, hostID, id, info, entry)
		r.checkEntryRecord(s, hostID, id, entry)
	}

	// A ledger that keyspace's decoder rejects stops every coordinator
	// from allocating on the host, so it is a violation of its own, also
	// where a check above already named the cause.
	if err := l.Validate(); err != nil {
		r.add(ViolationInvalidDocument, hostID, "", "ledger: %v", err)
	}
}

func (r *InvariantReport) checkCapacity(hostID string,
	info *keyspace.HostInfo, l *keyspace.Ledger) {
	cpu, memory, gpus := l.Totals()
	if cpu > info.TotalCPU {
		r.add(ViolationOvercommit, hostID, "",
			"cpu: ledger holds %d, host has %d", cpu, info.TotalCPU)
	}
	if memory > info.TotalMemory {
		r.add(ViolationOvercommit, hostID, "",
			"memory: ledger holds %d bytes, host has %d",
			memory, info.TotalMemory)
	}
	if gpus > len(info.GPUs) {
		r.add(ViolationOvercommit, hostID, "",
			"gpus: ledger holds %d, host has %d", gpus, len(info.GPUs))
	}
}

// checkEntryGPUs checks that each GPU of an entry is registered and held
// by no other entry on any host.
func (r *InvariantReport) checkEntryGPUs(s *snapshot, hostID,
	allocID string, info *keyspace.HostInfo, entry keyspace.LedgerEntry) {
	for _, uuid := range entry.GPUs {
		if info != nil && !hasGPU(info, uuid) {
			r.add(ViolationUnknownGPU, hostID, allocID,
				"GPU %s is not in the host's info", uuid)
		}
		if h, ok := s.gpuHolders[uuid]; ok {
			r.add(ViolationGPUHeldTwice, hostID, allocID,
				"GPU %s is also held by %s on host %s",
				uuid, h.allocID, h.hostID)
			continue
		}
		s.gpuHolders[uuid] = gpuHolder{hostID: hostID, allocID: allocID}
	}
}

// checkEntryRecord checks that a ledger entry has a matching active or
// lost record.
func (r *InvariantReport) checkEntryRecord(s *snapshot, hostID,
	allocID string, entry keyspace.LedgerEntry) {
	rec := s.records[allocID]
	switch {
	case rec == nil:
		r.add(ViolationEntryWithoutRecord, hostID, allocID,
			"ledger entry has no allocation record")
	case !holdsResources(rec):
		r.add(ViolationEntryWithoutRecord, hostID, allocID,
			"ledger entry's record is in state %q", rec.State)
	case rec.HostID != hostID:
		r.add(ViolationRecordMismatch, hostID, allocID,
			"record names host %q", rec.HostID)
	case !sameEntry(rec.LedgerEntry(), entry):
		r.add(ViolationRecordMismatch, hostID, allocID,
			"record holds %+v, ledger entry holds %+v",
			rec.LedgerEntry(), entry)
	}
}

// checkRecords counts records by state and checks that each active or
// lost record is in its host's ledger.
func (r *InvariantReport) checkRecords(s *snapshot) {
	for _, id := range slices.Sorted(maps.Keys(s.records)) {
		rec := s.records[id]
		switch rec.State {
		case keyspace.StateActive:
			r.Active++
		case keyspace.StateLost:
			r.Lost++
		}
		if !holdsResources(rec) || s.badLedgers[rec.HostID] {
			continue
		}
		l := s.ledgers[rec.HostID]
		if l == nil {
			r.add(ViolationRecordWithoutEntry, rec.HostID, id,
				"%s record, but the host has no ledger", rec.State)
			continue
		}
		if _, ok := l.Allocations[id]; !ok {
			r.add(ViolationRecordWithoutEntry, rec.HostID, id,
				"%s record is missing from the host's ledger", rec.State)
		}
	}
}

// checkAcks checks that acknowledged allocations the test still holds
// exist, and that those it released hold nothing.
func (r *InvariantReport) checkAcks(s *snapshot, acks *AckSet) {
	for _, id := range acks.Held() {
		r.AcksChecked++
		rec := s.records[id]
		switch {
		case rec == nil:
			r.add(ViolationLostAck, "", id,
				"acknowledged allocation has no record")
		case rec.State == keyspace.StateReleased:
			r.add(ViolationLostAck, rec.HostID, id,
				"record is released, but the test did not release it")
		case rec.State == keyspace.StateExpired && rec.TTLSeconds == 0:
			r.add(ViolationLostAck, rec.HostID, id,
				"record expired although it has no TTL")
		}
	}
	for _, id := range acks.Released() {
		if rec := s.records[id]; rec != nil && holdsResources(rec) {
			r.add(ViolationReleasedHeld, rec.HostID, id,
				"released by the test, but the record is %s", rec.State)
		}
		for _, hostID := range s.entryHosts[id] {
			r.add(ViolationReleasedHeld, hostID, id,
				"released by the test, but still in the host's ledger")
		}
	}
}

func holdsResources(a *keyspace.Allocation) bool {
	return a.State == keyspace.StateActive || a.State == keyspace.StateLost
}

func hasGPU(info *keyspace.HostInfo, uuid string) bool {
	for _, g := range info.GPUs {
		if g.UUID == uuid {
			return true
		}
	}
	return false
}

// sameEntry compares two entries, ignoring the order of GPUs.
func sameEntry(a, b keyspace.LedgerEntry) bool {
	if a.CPU != b.CPU || a.Memory != b.Memory || len(a.GPUs) != len(b.GPUs) {
		return false
	}
	ga := slices.Sorted(slices.Values(a.GPUs))
	gb := slices.Sorted(slices.Values(b.GPUs))
	return slices.Equal(ga, gb)
}
