package harness

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

const gib = int64(1) << 30

// fleet is a keyspace written by hand: two hosts, their ledgers and the
// allocation records, consistent until a case breaks it.
type fleet struct {
	infos   map[string]keyspace.HostInfo
	live    map[string]bool
	ledgers map[string]keyspace.Ledger
	records map[string]keyspace.Allocation
	// raw replaces a stored value, by key below the prefix.
	raw  map[string]string
	acks *AckSet
}

func gpuInfos(uuids ...string) []keyspace.GPUInfo {
	gpus := make([]keyspace.GPUInfo, len(uuids))
	for i, u := range uuids {
		gpus[i] = keyspace.GPUInfo{Index: i, UUID: u, Name: "A100",
			MemoryTotal: 40 * gib}
	}
	return gpus
}

func record(id, hostID, state string, cpu int, memory int64,
	gpus ...string) keyspace.Allocation {
	a := keyspace.Allocation{ID: id, HostID: hostID, CPU: cpu,
		Memory: memory, State: state, CreatedAt: time.Unix(1, 0).UTC()}
	for i, u := range gpus {
		a.GPUs = append(a.GPUs, keyspace.AllocatedGPU{Index: i, UUID: u})
	}
	return a
}

// newFleet returns host h1 (8 CPUs, 64 GiB, GPUs g1-g4) with a1 active
// and a2 lost, and live host h2 (4 CPUs, 16 GiB) filled by a3; a4 was
// released by the test.
func newFleet() *fleet {
	f := &fleet{
		infos: map[string]keyspace.HostInfo{
			"h1": {ID: "h1", Name: "gpu-1", TotalCPU: 8,
				TotalMemory: 64 * gib, GPUs: gpuInfos("g1", "g2", "g3", "g4")},
			"h2": {ID: "h2", Name: "cpu-1", TotalCPU: 4,
				TotalMemory: 16 * gib, GPUs: []keyspace.GPUInfo{}},
		},
		live:    map[string]bool{"h2": true},
		records: map[string]keyspace.Allocation{},
		ledgers: map[string]keyspace.Ledger{},
		raw:     map[string]string{},
		acks:    NewAckSet(),
	}
	f.add(record("a1", "h1", keyspace.StateActive, 2, 8*gib, "g1", "g2"))
	f.add(record("a2", "h1", keyspace.StateLost, 2, 8*gib, "g3"))
	f.add(record("a3", "h2", keyspace.StateActive, 4, 16*gib))
	f.records["a4"] = record("a4", "h1", keyspace.StateReleased, 1, gib)
	f.acks.Ack("a1", "a2", "a3", "a4")
	f.acks.Release("a4")
	return f
}

// add stores a record and its ledger entry, as a coordinator does.
func (f *fleet) add(a keyspace.Allocation) {
	f.records[a.ID] = a
	f.setEntry(a.HostID, a.ID, a.LedgerEntry())
}

func (f *fleet) setEntry(hostID, allocID string, e keyspace.LedgerEntry) {
	l, ok := f.ledgers[hostID]
	if !ok {
		l = keyspace.Ledger{Allocations: map[string]keyspace.LedgerEntry{}}
	}
	l.Allocations[allocID] = e
	f.ledgers[hostID] = l
}

func (f *fleet) deleteEntry(hostID, allocID string) {
	delete(f.ledgers[hostID].Allocations, allocID)
}

// write stores the fleet under ks in one transaction.
func (f *fleet) write(t *testing.T, cli *clientv3.Client,
	ks keyspace.Keyspace) {
	t.Helper()
	kv := map[string]any{}
	for id, info := range f.infos {
		kv[ks.HostInfo(id)] = info
	}
	for id := range f.live {
		kv[ks.HostStatus(id)] = keyspace.HostStatus{InstanceID: "i-" + id}
	}
	for id, l := range f.ledgers {
		kv[ks.HostLedger(id)] = l
	}
	for id, a := range f.records {
		kv[ks.Allocation(id)] = a
	}

	var ops []clientv3.Op
	for key, doc := range kv {
		value, err := keyspace.Encode(doc)
		require.NoError(t, err)
		if raw, ok := f.raw[key[len(ks.Prefix()):]]; ok {
			value = raw
		}
		ops = append(ops, clientv3.OpPut(key, value))
	}
	_, err := cli.Txn(Ctx(t, 5*time.Second)).Then(ops...).Commit()
	require.NoError(t, err)
}

func TestCheckInvariants(t *testing.T) {
	member := etcdtest.Start(t)

	cases := []struct {
		name    string
		corrupt func(f *fleet)
		want    map[ViolationKind]int
	}{
		{"consistent keyspace", func(*fleet) {}, nil},
		{"cpu overcommit", func(f *fleet) {
			f.add(record("a1", "h1", keyspace.StateActive, 7, 8*gib, "g1"))
		}, map[ViolationKind]int{ViolationOvercommit: 1}},
		{"memory overcommit", func(f *fleet) {
			f.add(record("a3", "h2", keyspace.StateActive, 4, 16*gib+1))
		}, map[ViolationKind]int{ViolationOvercommit: 1}},
		{"gpu count overcommit", func(f *fleet) {
			info := f.infos["h1"]
			info.GPUs = gpuInfos("g1", "g2")
			f.infos["h1"] = info
		}, map[ViolationKind]int{ViolationOvercommit: 1, ViolationUnknownGPU: 1}},
		{"gpu held twice on one host", func(f *fleet) {
			f.add(record("a2", "h1", keyspace.StateLost, 2, 8*gib, "g1"))
		}, map[ViolationKind]int{
			ViolationGPUHeldTwice: 1, ViolationInvalidDocument: 1}},
		{"gpu held twice across hosts", func(f *fleet) {
			info := f.infos["h2"]
			info.GPUs = gpuInfos("g1")
			f.infos["h2"] = info
			f.add(record("a3", "h2", keyspace.StateActive, 4, 16*gib, "g1"))
		}, map[ViolationKind]int{ViolationGPUHeldTwice: 1}},
		{"gpu not registered", func(f *fleet) {
			f.add(record("a1", "h1", keyspace.StateActive, 2, 8*gib, "g1", "g9"))
		}, map[ViolationKind]int{ViolationUnknownGPU: 1}},
		{"record without ledger entry", func(f *fleet) {
			f.deleteEntry("h1", "a2")
		}, map[ViolationKind]int{ViolationRecordWithoutEntry: 1}},
		{"ledger entry without record", func(f *fleet) {
			f.setEntry("h1", "a5", keyspace.LedgerEntry{CPU: 1, Memory: gib})
		}, map[ViolationKind]int{ViolationEntryWithoutRecord: 1}},
		{"ledger entry with released record", func(f *fleet) {
			a := f.records["a2"]
			a.State = keyspace.StateReleased
			f.records["a2"] = a
		}, map[ViolationKind]int{
			ViolationEntryWithoutRecord: 1, ViolationLostAck: 1}},
		{"record differs from entry", func(f *fleet) {
			a := f.records["a1"]
			a.CPU = 3
			f.records["a1"] = a
		}, map[ViolationKind]int{ViolationRecordMismatch: 1}},
		{"record names another host", func(f *fleet) {
			a := f.records["a3"]
			a.HostID = "h1"
			f.records["a3"] = a
		}, map[ViolationKind]int{
			ViolationRecordMismatch: 1, ViolationRecordWithoutEntry: 1}},
		{"acknowledged allocation missing", func(f *fleet) {
			f.acks.Ack("a-gone")
		}, map[ViolationKind]int{ViolationLostAck: 1}},
		{"acknowledged allocation released by others", func(f *fleet) {
			a := f.records["a1"]
			a.State = keyspace.StateReleased
			f.records["a1"] = a
			f.deleteEntry("h1", "a1")
		}, map[ViolationKind]int{ViolationLostAck: 1}},
		{"acknowledged allocation expired without ttl", func(f *fleet) {
			a := f.records["a3"]
			a.State = keyspace.StateExpired
			f.records["a3"] = a
			f.deleteEntry("h2", "a3")
		}, map[ViolationKind]int{ViolationLostAck: 1}},
		{"acknowledged allocation expired by ttl", func(f *fleet) {
			a := f.records["a3"]
			a.State = keyspace.StateExpired
			a.TTLSeconds = 60
			f.records["a3"] = a
			f.deleteEntry("h2", "a3")
		}, nil},
		{"released allocation still held", func(f *fleet) {
			f.acks.Release("a1")
		}, map[ViolationKind]int{ViolationReleasedHeld: 2}},
		{"ledger not json", func(f *fleet) {
			f.raw["/hosts/h1/allocations"] = "{not json"
		}, map[ViolationKind]int{ViolationInvalidDocument: 1}},
		{"record not valid", func(f *fleet) {
			f.raw["/allocations/a3"] = `{"id":"a3","state":"active"}`
		}, map[ViolationKind]int{ViolationInvalidDocument: 1,
			ViolationEntryWithoutRecord: 1, ViolationLostAck: 1}},
		{"ledger entry with invalid id", func(f *fleet) {
			f.setEntry("h1", "bad id", keyspace.LedgerEntry{CPU: 1})
		}, map[ViolationKind]int{
			ViolationEntryWithoutRecord: 1, ViolationInvalidDocument: 1}},
		{"ledger with negative quantity", func(f *fleet) {
			f.add(record("a5", "h1", keyspace.StateActive, 1, gib))
			f.raw["/hosts/h1/allocations"] = `{"allocations":{` +
				`"a1":{"cpu":2,"memory":8589934592,"gpus":["g1","g2"]},` +
				`"a2":{"cpu":2,"memory":8589934592,"gpus":["g3"]},` +
				`"a5":{"cpu":1,"memory":-1}}}`
		}, map[ViolationKind]int{
			ViolationRecordMismatch: 1, ViolationInvalidDocument: 1}},
		{"ledger on host without info", func(f *fleet) {
			delete(f.infos, "h2")
		}, map[ViolationKind]int{ViolationMissingInfo: 1}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ks, err := keyspace.New(fmt.Sprintf("/case%d", i))
			require.NoError(t, err)
			f := newFleet()
			tc.corrupt(f)
			f.write(t, member.Client, ks)

			r, err := CheckInvariants(Ctx(t, 5*time.Second),
				member.Client, ks, f.acks)
			require.NoError(t, err)
			t.Logf("%s", r.Summary())
			for _, v := range r.Violations {
				t.Logf("  %s", v)
			}

			got := map[ViolationKind]int{}
			for _, v := range r.Violations {
				got[v.Kind]++
			}
			want := tc.want
			if want == nil {
				want = map[ViolationKind]int{}
			}
			require.Equal(t, want, got)
			require.Equal(t, got[ViolationLostAck], r.LostAcks)
			require.Equal(t, got[ViolationOvercommit]+
				got[ViolationGPUHeldTwice], r.Overcommitted)
		})
	}
}

func TestCheckInvariantsCounts(t *testing.T) {
	member := etcdtest.Start(t)
	ks, err := keyspace.New("/counts")
	require.NoError(t, err)
	f := newFleet()
	f.write(t, member.Client, ks)

	r := RequireInvariants(t, member.Client, ks, f.acks)
	require.True(t, r.OK())
	require.Positive(t, r.Revision)
	require.Equal(t, 2, r.Hosts)
	require.Equal(t, 1, r.LiveHosts)
	require.Equal(t, 4, r.Allocations)
	require.Equal(t, 2, r.Active)
	require.Equal(t, 1, r.Lost)
	require.Equal(t, 3, r.LedgerEntries)
	require.Equal(t, 3, r.AcksChecked)
}

func TestCheckInvariantsEmptyKeyspace(t *testing.T) {
	member := etcdtest.Start(t)
	r := RequireInvariants(t, member.Client,
		mustKeyspace(t, keyspace.DefaultPrefix), nil)
	require.Zero(t, r.Hosts)
	require.Zero(t, r.Allocations)
}

func TestInvariantReportRequireFails(t *testing.T) {
	r := &InvariantReport{Revision: 7}
	r.add(ViolationGPUHeldTwice, "h1", "a2", "GPU g1 is also held by a1")
	require.Equal(t, 1, r.Count(ViolationGPUHeldTwice))
	require.Equal(t, 1, r.Overcommitted)

	rec := &recordingTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		r.Require(rec)
	}()
	require.True(t, rec.failed)
	require.Contains(t, rec.message,
		"gpu_held_twice host_id=h1 alloc_id=a2: GPU g1 is also held by a1")
	require.Contains(t, rec.message, "revision 7")
}

func mustKeyspace(t *testing.T, prefix string) keyspace.Keyspace {
	t.Helper()
	ks, err := keyspace.New(prefix)
	require.NoError(t, err)
	return ks
}
