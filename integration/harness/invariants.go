package harness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// ViolationKind classifies a broken invariant.
type ViolationKind string

// Kinds of violations that CheckInvariants reports.
const (
	// ViolationInvalidDocument is a stored document that does not decode or
	// validate.
	ViolationInvalidDocument ViolationKind = "invalid_document"
	// ViolationOvercommit is a host whose ledger holds more CPU, memory
	// or GPUs than its info registers.
	ViolationOvercommit ViolationKind = "overcommit"
	// ViolationGPUHeldTwice is a GPU in two ledger entries.
	ViolationGPUHeldTwice ViolationKind = "gpu_held_twice"
	// ViolationUnknownGPU is a ledger GPU that the host's info does not
	// list.
	ViolationUnknownGPU ViolationKind = "unknown_gpu"
	// ViolationMissingInfo is a ledger with entries on a host that has
	// no info document.
	ViolationMissingInfo ViolationKind = "missing_info"
	// ViolationEntryWithoutRecord is a ledger entry without an active or
	// lost allocation record on the same host.
	ViolationEntryWithoutRecord ViolationKind = "entry_without_record"
	// ViolationRecordWithoutEntry is an active or lost allocation record
	// missing from its host's ledger.
	ViolationRecordWithoutEntry ViolationKind = "record_without_entry"
	// ViolationRecordMismatch is a record whose resources differ from
	// its ledger entry, or whose ID differs from its key.
	ViolationRecordMismatch ViolationKind = "record_mismatch"
	// ViolationLostAck is an acknowledged allocation that is gone
	// although the test did not release it.
	ViolationLostAck ViolationKind = "lost_ack"
	// ViolationReleasedHeld is an allocation the test released that
	// still holds resources.
	ViolationReleasedHeld ViolationKind = "released_still_held"
)

// Violation is one broken invariant.
type Violation struct {
	Kind ViolationKind
	// HostID and AllocID name what is broken; either may be empty.
	HostID  string
	AllocID string
	Detail  string
}

// String returns the violation on one line.
func (v Violation) String() string {
	var b strings.Builder
	b.WriteString(string(v.Kind))
	if v.HostID != "" {
		b.WriteString(" host_id=" + v.HostID)
	}
	if v.AllocID != "" {
		b.WriteString(" alloc_id=" + v.AllocID)
	}
	b.WriteString(": " + v.Detail)
	return b.String()
}

// InvariantReport is the result of CheckInvariants at one etcd revision.
type InvariantReport struct {
	// Revision is the etcd revision that was read.
	Revision int64
	// Hosts counts hosts with an info document; LiveHosts those that
	// also have a status key, that is a live lease.
	Hosts     int
	LiveHosts int
	// Allocations counts allocation records in any state; Active and
	// Lost count those that hold resources.
	Allocations int
	Active      int
	Lost        int
	// LedgerEntries counts entries over all ledgers.
	LedgerEntries int
	// AcksChecked is the number of acknowledged, unreleased IDs checked
	// for presence.
	AcksChecked int
	// Overcommitted counts overcommit and GPU-held-twice violations;
	// LostAcks counts lost-ack violations.
	Overcommitted int
	LostAcks      int
	Violations    []Violation
}

// OK reports whether no invariant is broken.
func (r *InvariantReport) OK() bool { return len(r.Violations) == 0 }

// Count returns the number of violations of kind.
func (r *InvariantReport) Count(kind ViolationKind) int {
	n := 0
	for _, v := range r.Violations {
		if v.Kind == kind {
			n++
		}
	}
	return n
}

// Summary returns the counts on one line.
func (r *InvariantReport) Summary() string {
	return fmt.Sprintf("revision=%d hosts=%d live_hosts=%d allocations=%d "+
		"active=%d lost=%d ledger_entries=%d acks_checked=%d "+
		"overcommitted=%d lost_acks=%d violations=%d",
		r.Revision, r.Hosts, r.LiveHosts, r.Allocations, r.Active, r.Lost,
		r.LedgerEntries, r.AcksChecked, r.Overcommitted, r.LostAcks,
		len(r.Violations))
}

// Require logs the summary and fails the test, listing every violation,
// when an invariant is broken.
func (r *InvariantReport) Require(t testing.TB) {
	t.Helper()
	t.Logf("invariants: %s", r.Summary())
	if r.OK() {
		return
	}
	lines := make([]string, len(r.Violations))
	for i, v := range r.Violations {
		lines[i] = "  " + v.String()
	}
	t.Fatalf("%d invariant violations at revision %d:\n%s",
		len(r.Violations), r.Revision, strings.Join(lines, "\n"))
}

// RequireInvariants checks the keyspace, with a 10 s deadline, and fails
// the test on an error or a violation. acks may be nil.
func RequireInvariants(t testing.TB, cli *clientv3.Client,
	ks keyspace.Keyspace, acks *AckSet) *InvariantReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := CheckInvariants(ctx, cli, ks, acks)
	if err != nil {
		t.Fatalf("check invariants: %v", err)
	}
	r.Require(t)
	return r
}

// snapshot is the keyspace decoded from one read.
type snapshot struct {
	infos   map[string]*keyspace.HostInfo
	live    map[string]bool
	ledgers map[string]*keyspace.Ledger
	// badLedgers are hosts whose ledger is not JSON; their records
	// cannot be matched.
	badLedgers map[string]bool
	records    map[string]*keyspace.Allocation
	// entryHosts maps an allocation ID to the hosts whose ledger holds it.
	entryHosts map[string][]string
	// gpuHolders maps a GPU UUID to the first entry seen holding it.
	gpuHolders map[string]gpuHolder
}

// CheckInvariants reads everything under the keyspace's prefix in one
// linearizable Get and checks the stored state:
//   - each host's ledger fits in the CPU, memory and GPUs of its info;
//   - no GPU is held twice, and every held GPU is registered;
//   - ledger entries and active or lost records match one to one;
//   - every allocation in acks that the test did not release is present,
//     and every one it released holds nothing.
//
// acks may be nil. The error reports a failed read; broken invariants are
// in the report.
func CheckInvariants(ctx context.Context, cli *clientv3.Client,
	ks keyspace.Keyspace, acks *AckSet) (*InvariantReport, error) {
	resp, err := cli.Get(ctx, ks.Root(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ks.Root(), err)
	}
	r := &InvariantReport{Revision: resp.Header.Revision}
	snap := r.decode(ks, resp.Kvs)

	r.Hosts = len(snap.infos)
	r.LiveHosts = len(snap.live)
	r.Allocations = len(snap.records)
	for _, id := range slices.Sorted(maps.Keys(snap.ledgers)) {
		r.checkLedger(snap, id)
	}
	r.checkRecords(snap)
	if acks != nil {
		r.checkAcks(snap, acks)
	}
	return r, nil
}

func (r *InvariantReport) add(kind ViolationKind, hostID, allocID,
	format string, args ...any) {
	r.Violations = append(r.Violations, Violation{
		Kind:    kind,
		HostID:  hostID,
		AllocID: allocID,
		Detail:  fmt.Sprintf(format, args...),
	})
	switch kind {
	case ViolationOvercommit, ViolationGPUHeldTwice:
		r.Overcommitted++
	case ViolationLostAck:
		r.LostAcks++
	}
}
