package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// retentionLease is the lease this coordinator attaches released records
// to. It is granted with a TTL of 1.5 × the retention and replaced once
// half the retention has passed, so each record attached to it lives
// between one and 1.5 retentions. It is never kept alive or revoked.
type retentionLease struct {
	// mu guards the fields below and serializes grants.
	mu        sync.Mutex
	id        clientv3.LeaseID
	grantedAt time.Time
}

// retentionLeaseID returns the lease to attach a released record to,
// granting a new one when there is none or the current one is too old.
func (f *Fleet) retentionLeaseID(ctx context.Context) (clientv3.LeaseID, error) {
	l := &f.lease
	l.mu.Lock()
	defer l.mu.Unlock()

	now := f.now()
	if l.id != 0 && now.Sub(l.grantedAt) < f.cfg.ReleasedRetention/2 {
		return l.id, nil
	}

	ttl := (f.cfg.ReleasedRetention*3/2 + time.Second - 1) / time.Second
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Grant(callCtx, int64(ttl))
	if err != nil {
		return 0, f.unavailable(OpLease, "grant the lease for released "+
			"allocations", err)
	}
	l.id, l.grantedAt = resp.ID, now
	f.log.Debug("granted lease for released allocations",
		"lease_id", fmt.Sprintf("%x", int64(resp.ID)), "ttl_seconds", resp.TTL)
	return l.id, nil
}

// dropLease clears the cached lease id after etcd reported it gone.
func (f *Fleet) dropLease(id clientv3.LeaseID) {
	f.lease.mu.Lock()
	defer f.lease.mu.Unlock()
	if f.lease.id == id {
		f.lease.id = 0
	}
}

// Release frees an allocation: in one transaction it removes the entry
// from its host's ledger, deletes its lease key and marks the record
// released. An allocation whose host or ledger entry is gone is still
// marked released. A second release returns the record with
// AlreadyReleased set, and so does a release of an expired allocation.
func (f *Fleet) Release(ctx context.Context, allocID string) (api.Allocation, error) {
	if err := checkID("allocation", allocID); err != nil {
		return api.Allocation{}, err
	}
	rec, changed, err := f.finish(ctx, allocID, endRelease)
	if err != nil {
		return api.Allocation{}, err
	}
	a := toAPIAllocation(rec)
	a.AlreadyReleased = !changed
	return a, nil
}

// attemptResult is the outcome of one compare-and-swap attempt.
type attemptResult int

const (
	attemptDone attemptResult = iota
	attemptConflict
	// attemptRetry requests another attempt without a conflict, for
	// example after the retention lease vanished.
	attemptRetry
)

// ending is one way an allocation's life ends, with the conditions its
// transaction checks beyond the record's and ledger's revisions.
type ending struct {
	op    string
	state string
	// verb and reason are logged with the change.
	verb   string
	reason string
	// expiry requires a TTL and an absent lease key.
	expiry bool
	// lostFor, when positive, requires a lost record whose lost_at is at
	// least this long ago.
	lostFor time.Duration
}

var (
	endRelease = ending{op: OpRelease, state: keyspace.StateReleased,
		verb: "allocation released", reason: "released by request"}
	endExpire = ending{op: OpExpire, state: keyspace.StateExpired,
		verb: "allocation expired", reason: "TTL ran out without renewal",
		expiry: true}
)

// finish ends an allocation's life as end describes, retrying lost
// compares. It returns the record as it ends and whether this call
// changed it; a record that no longer qualifies comes back unchanged.
func (f *Fleet) finish(
	ctx context.Context, allocID string, end ending,
) (*keyspace.Allocation, bool, error) {
	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		rec, changed, res, err := f.finishOnce(ctx, allocID, end)
		switch {
		case err != nil:
			return nil, false, err
		case res == attemptDone:
			return rec, changed, nil
		case res == attemptConflict:
			f.casConflict(end.op)
		}
		if err := pause(ctx, attempt); err != nil {
			return nil, false, f.unavailable(end.op,
				fmt.Sprintf("%s allocation %q", end.op, allocID), err)
		}
	}
	return nil, false, fmt.Errorf("%w: %s allocation %q: gave up after %d "+
		"attempts lost a compare-and-swap race; retry",
		service.ErrUnavailable, end.op, allocID, f.cfg.MaxAttempts)
}

// qualifies reports whether rec, read with its lease key, may end as end
// describes now.
func (f *Fleet) qualifies(
	rec *keyspace.Allocation, leaseRev int64, end ending,
) bool {
	switch {
	case !isActiveState(rec.State):
		return false
	case end.expiry:
		return rec.TTLSeconds > 0 && leaseRev == 0
	case end.lostFor > 0:
		return rec.State == keyspace.StateLost && rec.LostAt != nil &&
			f.now().Sub(*rec.LostAt) >= end.lostFor
	}
	return true
}

func (f *Fleet) finishOnce(
	ctx context.Context, allocID string, end ending,
) (*keyspace.Allocation, bool, attemptResult, error) {
	rd, err := f.readAllocationLease(ctx, end.op, allocID)
	if err != nil {
		return nil, false, attemptDone, err
	}
	if !f.qualifies(rd.rec, rd.leaseRev, end) {
		return rd.rec, false, attemptDone, nil
	}

	h, err := f.readHost(ctx, end.op, rd.rec.HostID)
	if err != nil {
		return nil, false, attemptDone, err
	}
	if h.ledgerErr != nil {
		return nil, false, attemptDone, f.ledgerError(h)
	}
	idemRev, err := f.idempotencyRevision(ctx, end.op, rd.rec)
	if err != nil {
		return nil, false, attemptDone, err
	}
	leaseID, err := f.retentionLeaseID(ctx)
	if err != nil {
		return nil, false, attemptDone, err
	}

	ended := *rd.rec
	now := f.now().UTC()
	ended.State = end.state
	ended.ReleasedAt = &now
	cmps, ops, err := f.releaseOps(h, &ended, rd, idemRev, leaseID)
	if err != nil {
		return nil, false, attemptDone, err
	}

	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		f.dropLease(leaseID)
		return nil, false, attemptRetry, nil
	}
	if err != nil {
		if rev, ok := f.endedDespite(ctx, end.op, &ended); ok {
			f.logEnded(&ended, rd.rec.State, end, rev)
			return &ended, true, attemptDone, nil
		}
		return nil, false, attemptDone, f.unavailable(end.op,
			fmt.Sprintf("%s allocation %q", end.op, allocID), err)
	}
	if !resp.Succeeded {
		return nil, false, attemptConflict, nil
	}

	f.waitForRevision(ctx, resp.Header.Revision)
	f.revokeAllocationLease(ctx, allocID, rd.lease)
	f.logEnded(&ended, rd.rec.State, end, resp.Header.Revision)
	return &ended, true, attemptDone, nil
}

// endedDespite reports whether a commit that failed without a known
// outcome was applied anyway, which is when the record equals ended, and
// returns the record's revision. The read uses a context detached from
// ctx, because a cancelled request or a stopping coordinator usually
// causes such failures. If the read fails too, the end goes unlogged.
func (f *Fleet) endedDespite(
	ctx context.Context, op string, ended *keyspace.Allocation,
) (int64, bool) {
	rd, err := f.readAllocationLease(context.WithoutCancel(ctx), op, ended.ID)
	if err != nil {
		return 0, false
	}
	rec := rd.rec
	if rec.State != ended.State || rec.ReleasedAt == nil ||
		!rec.ReleasedAt.Equal(*ended.ReleasedAt) {
		return 0, false
	}
	return rd.rev, true
}

// logEnded logs and counts an allocation whose life ended.
func (f *Fleet) logEnded(
	rec *keyspace.Allocation, from string, end ending, rev int64,
) {
	attrs := []any{"alloc_id", rec.ID, "host_id", rec.HostID,
		"owner", rec.Owner, "revision", rev, "reason", end.reason}
	switch end.state {
	case keyspace.StateExpired:
		f.counts.expired.Add(1)
		if rec.ExpiresAt != nil {
			attrs = append(attrs, "expires_at", formatTime(*rec.ExpiresAt))
		}
		f.log.Warn(end.verb, attrs...)
	default:
		if end.lostFor > 0 {
			f.counts.lostReleased.Add(1)
			f.log.Warn(end.verb, attrs...)
			break
		}
		f.log.Info(end.verb, attrs...)
	}
	f.stateChanged(from, end.state, end.reason)
}

// idempotencyRevision returns the ModRevision of rec's idempotency key
// when that key still points to rec, and 0 otherwise.
func (f *Fleet) idempotencyRevision(
	ctx context.Context, op string, rec *keyspace.Allocation,
) (int64, error) {
	if rec.IdempotencyKey == "" {
		return 0, nil
	}
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Get(callCtx, f.ks.Idempotency(rec.IdempotencyKey))
	if err != nil {
		return 0, f.unavailable(op, fmt.Sprintf(
			"read idempotency key %q", rec.IdempotencyKey), err)
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != rec.ID {
		return 0, nil
	}
	return resp.Kvs[0].ModRevision, nil
}

// releaseOps builds the transaction that stores the ended record and
// the host's ledger without it. The record, and the idempotency key that
// points to it, move to the retention lease. The allocation's lease key
// must be as read: absent for an expiry, deleted otherwise.
func (f *Fleet) releaseOps(
	h *hostState, ended *keyspace.Allocation, rd allocationRead,
	idemRev int64, leaseID clientv3.LeaseID,
) ([]clientv3.Cmp, []clientv3.Op, error) {
	recKey := f.ks.Allocation(ended.ID)
	value, err := keyspace.Encode(ended)
	if err != nil {
		return nil, nil, err
	}
	leaseKey := f.ks.AllocationLease(ended.ID)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(recKey), "=", rd.rev),
		clientv3.Compare(clientv3.ModRevision(leaseKey), "=", rd.leaseRev),
		f.ledgerUnchanged(h),
	}
	ops := []clientv3.Op{
		clientv3.OpPut(recKey, value, clientv3.WithLease(leaseID)),
	}
	if rd.leaseRev > 0 {
		ops = append(ops, clientv3.OpDelete(leaseKey))
	}

	if _, ok := h.ledger.Allocations[ended.ID]; ok {
		ledger := cloneLedger(h.ledger)
		delete(ledger.Allocations, ended.ID)
		ledgerValue, err := encodeLedger(h.id, ledger)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, clientv3.OpPut(f.ks.HostLedger(h.id), ledgerValue))
	}

	if idemRev > 0 {
		idemKey := f.ks.Idempotency(ended.IdempotencyKey)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(idemKey), "=", idemRev))
		ops = append(ops, clientv3.OpPut(idemKey, ended.ID,
			clientv3.WithLease(leaseID)))
	}
	return cmps, ops, nil
}

// readAllocation reads an allocation record and its ModRevision with a
// linearizable read.
func (f *Fleet) readAllocation(
	ctx context.Context, op, allocID string,
) (*keyspace.Allocation, int64, error) {
	key := f.ks.Allocation(allocID)
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Get(callCtx, key)
	if err != nil {
		return nil, 0, f.unavailable(op, fmt.Sprintf("read allocation %q",
			allocID), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("%w: allocation %q does not exist",
			service.ErrNotFound, allocID)
	}

	kv := resp.Kvs[0]
	rec, err := decodeRecord(key, allocID, kv.Value)
	if err != nil {
		return nil, 0, err
	}
	return rec, kv.ModRevision, nil
}

// GetAllocation returns one allocation from the view, or from etcd when
// the view does not hold it yet.
func (f *Fleet) GetAllocation(ctx context.Context, allocID string) (api.Allocation, error) {
	if err := checkID("allocation", allocID); err != nil {
		return api.Allocation{}, err
	}
	f.mu.RLock()
	e, ok := f.view.allocs[allocID]
	f.mu.RUnlock()
	if ok {
		return toAPIAllocation(e.rec), nil
	}

	rec, _, err := f.readAllocation(ctx, OpRead, allocID)
	if err != nil {
		return api.Allocation{}, err
	}
	return toAPIAllocation(rec), nil
}

// ListAllocations returns the allocations in the view that match filter,
// oldest first.
func (f *Fleet) ListAllocations(
	_ context.Context, filter service.AllocationFilter,
) ([]api.Allocation, error) {
	if err := checkFilter(filter); err != nil {
		return nil, err
	}
	if err := f.checkReady(); err != nil {
		return nil, err
	}

	f.mu.RLock()
	recs := make([]*keyspace.Allocation, 0, len(f.view.allocs))
	for _, e := range f.view.allocs {
		if matchesFilter(e.rec, filter) {
			recs = append(recs, e.rec)
		}
	}
	f.mu.RUnlock()

	slices.SortFunc(recs, func(a, b *keyspace.Allocation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := make([]api.Allocation, len(recs))
	for i, rec := range recs {
		out[i] = toAPIAllocation(rec)
	}
	return out, nil
}

var allocationStates = []string{
	keyspace.StateActive, keyspace.StateLost,
	keyspace.StateExpired, keyspace.StateReleased,
}

func checkFilter(filter service.AllocationFilter) error {
	if filter.State != "" && !slices.Contains(allocationStates, filter.State) {
		return fmt.Errorf("%w: state %q is unknown; use one of %s",
			service.ErrInvalid, filter.State,
			strings.Join(allocationStates, ", "))
	}
	if filter.HostID != "" {
		return checkID("host", filter.HostID)
	}
	return nil
}

func matchesFilter(rec *keyspace.Allocation, filter service.AllocationFilter) bool {
	return (filter.HostID == "" || rec.HostID == filter.HostID) &&
		(filter.Owner == "" || rec.Owner == filter.Owner) &&
		(filter.State == "" || rec.State == filter.State)
}

// checkID rejects an ID that cannot name a key, with ErrInvalid.
func checkID(kind, id string) error {
	if err := keyspace.ValidID(id); err != nil {
		return fmt.Errorf("%w: %s %w", service.ErrInvalid, kind, err)
	}
	return nil
}

// toAPIAllocation converts a record to its API form.
func toAPIAllocation(rec *keyspace.Allocation) api.Allocation {
	return api.Allocation{
		ID:                 rec.ID,
		HostID:             rec.HostID,
		HostName:           rec.HostName,
		HostAddress:        rec.HostAddress,
		CPU:                rec.CPU,
		Memory:             rec.Memory,
		GPUs:               append([]keyspace.AllocatedGPU{}, rec.GPUs...),
		CUDAVisibleDevices: strings.Join(rec.GPUUUIDs(), ","),
		Owner:              rec.Owner,
		IdempotencyKey:     rec.IdempotencyKey,
		State:              rec.State,
		CreatedAt:          rec.CreatedAt,
		TTLSeconds:         rec.TTLSeconds,
		ExpiresAt:          rec.ExpiresAt,
		ReleasedAt:         rec.ReleasedAt,
		LostAt:             rec.LostAt,
	}
}
