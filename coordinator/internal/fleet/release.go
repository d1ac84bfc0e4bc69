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
// from its host's ledger and marks the record released. An allocation
// whose host or ledger entry is gone is still marked released. A second
// release returns the record with AlreadyReleased set.
func (f *Fleet) Release(ctx context.Context, allocID string) (api.Allocation, error) {
	if err := checkID("allocation", allocID); err != nil {
		return api.Allocation{}, err
	}

	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		a, res, err := f.releaseOnce(ctx, allocID)
		switch {
		case err != nil:
			return api.Allocation{}, err
		case res == attemptDone:
			return a, nil
		case res == attemptConflict:
			f.casConflict(OpRelease)
		}
		if err := pause(ctx, attempt); err != nil {
			return api.Allocation{}, f.unavailable(OpRelease,
				fmt.Sprintf("release allocation %q", allocID), err)
		}
	}
	return api.Allocation{}, fmt.Errorf("%w: release allocation %q: gave "+
		"up after %d attempts lost a compare-and-swap race; retry",
		service.ErrUnavailable, allocID, f.cfg.MaxAttempts)
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

func (f *Fleet) releaseOnce(
	ctx context.Context, allocID string,
) (api.Allocation, attemptResult, error) {
	rec, recRev, err := f.readAllocation(ctx, OpRelease, allocID)
	if err != nil {
		return api.Allocation{}, attemptDone, err
	}
	if !isActiveState(rec.State) {
		a := toAPIAllocation(rec)
		a.AlreadyReleased = true
		return a, attemptDone, nil
	}

	h, err := f.readHost(ctx, OpRelease, rec.HostID)
	if err != nil {
		return api.Allocation{}, attemptDone, err
	}
	if h.ledgerErr != nil {
		return api.Allocation{}, attemptDone, f.ledgerError(h)
	}
	idemRev, err := f.idempotencyRevision(ctx, rec)
	if err != nil {
		return api.Allocation{}, attemptDone, err
	}
	leaseID, err := f.retentionLeaseID(ctx)
	if err != nil {
		return api.Allocation{}, attemptDone, err
	}

	released := *rec
	now := f.now().UTC()
	released.State = keyspace.StateReleased
	released.ReleasedAt = &now
	cmps, ops, err := f.releaseOps(h, &released, recRev, idemRev, leaseID)
	if err != nil {
		return api.Allocation{}, attemptDone, err
	}

	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		f.dropLease(leaseID)
		return api.Allocation{}, attemptRetry, nil
	}
	if err != nil {
		return api.Allocation{}, attemptDone, f.unavailable(OpRelease,
			fmt.Sprintf("release allocation %q", allocID), err)
	}
	if !resp.Succeeded {
		return api.Allocation{}, attemptConflict, nil
	}

	f.waitForRevision(ctx, resp.Header.Revision)
	f.log.Info("allocation released", "alloc_id", allocID,
		"host_id", rec.HostID, "revision", resp.Header.Revision)
	return toAPIAllocation(&released), attemptDone, nil
}

// idempotencyRevision returns the ModRevision of rec's idempotency key
// when that key still points to rec, and 0 otherwise.
func (f *Fleet) idempotencyRevision(
	ctx context.Context, rec *keyspace.Allocation,
) (int64, error) {
	if rec.IdempotencyKey == "" {
		return 0, nil
	}
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Get(callCtx, f.ks.Idempotency(rec.IdempotencyKey))
	if err != nil {
		return 0, f.unavailable(OpRelease, fmt.Sprintf(
			"read idempotency key %q", rec.IdempotencyKey), err)
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != rec.ID {
		return 0, nil
	}
	return resp.Kvs[0].ModRevision, nil
}

// releaseOps builds the transaction that stores the released record and
// the host's ledger without it. The record, and the idempotency key that
// points to it, move to the retention lease.
func (f *Fleet) releaseOps(
	h *hostState, released *keyspace.Allocation, recRev, idemRev int64,
	leaseID clientv3.LeaseID,
) ([]clientv3.Cmp, []clientv3.Op, error) {
	recKey := f.ks.Allocation(released.ID)
	value, err := keyspace.Encode(released)
	if err != nil {
		return nil, nil, err
	}
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(recKey), "=", recRev),
		f.ledgerUnchanged(h),
	}
	ops := []clientv3.Op{
		clientv3.OpPut(recKey, value, clientv3.WithLease(leaseID)),
	}

	if _, ok := h.ledger.Allocations[released.ID]; ok {
		ledger := cloneLedger(h.ledger)
		delete(ledger.Allocations, released.ID)
		ledgerValue, err := encodeLedger(h.id, ledger)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, clientv3.OpPut(f.ks.HostLedger(h.id), ledgerValue))
	}

	if idemRev > 0 {
		idemKey := f.ks.Idempotency(released.IdempotencyKey)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(idemKey), "=", idemRev))
		ops = append(ops, clientv3.OpPut(idemKey, released.ID,
			clientv3.WithLease(leaseID)))
	}
	return cmps, ops, nil
}

// Renew moves an active allocation's expiry TTLSeconds past now.
func (f *Fleet) Renew(ctx context.Context, allocID string) (api.Allocation, error) {
	if err := checkID("allocation", allocID); err != nil {
		return api.Allocation{}, err
	}

	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		rec, rev, err := f.readAllocation(ctx, OpRenew, allocID)
		if err != nil {
			return api.Allocation{}, err
		}
		if !isActiveState(rec.State) {
			return api.Allocation{}, fmt.Errorf("%w: allocation %q is %s; "+
				"allocate again", service.ErrConflict, allocID, rec.State)
		}
		if rec.TTLSeconds == 0 {
			return api.Allocation{}, fmt.Errorf("%w: allocation %q has no "+
				"TTL", service.ErrInvalid, allocID)
		}

		// TODO: nothing enforces ExpiresAt yet; a reaper must free the
		// ledger entries of expired records with the same compare-and-swap
		// as Release and mark them expired.
		renewed := *rec
		expires := f.now().UTC().Add(time.Duration(rec.TTLSeconds) * time.Second)
		renewed.ExpiresAt = &expires

		done, err := f.putIfUnchanged(ctx, OpRenew, &renewed, rev)
		if err != nil || done {
			return toAPIAllocation(&renewed), err
		}
		f.casConflict(OpRenew)
		if err := pause(ctx, attempt); err != nil {
			return api.Allocation{}, f.unavailable(OpRenew,
				fmt.Sprintf("renew allocation %q", allocID), err)
		}
	}
	return api.Allocation{}, fmt.Errorf("%w: renew allocation %q: gave up "+
		"after %d attempts lost a compare-and-swap race; retry",
		service.ErrUnavailable, allocID, f.cfg.MaxAttempts)
}

// putIfUnchanged stores rec if its key is still at rev. It reports false
// when the compare failed.
func (f *Fleet) putIfUnchanged(
	ctx context.Context, op string, rec *keyspace.Allocation, rev int64,
) (bool, error) {
	value, err := keyspace.Encode(rec)
	if err != nil {
		return false, err
	}
	key := f.ks.Allocation(rec.ID)

	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, value)).Commit()
	if err != nil {
		return false, f.unavailable(op, fmt.Sprintf("update allocation %q",
			rec.ID), err)
	}
	if resp.Succeeded {
		f.waitForRevision(ctx, resp.Header.Revision)
	}
	return resp.Succeeded, nil
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
	rec, err := keyspace.DecodeAllocation(key, kv.Value)
	if err == nil && rec.ID != allocID {
		err = fmt.Errorf("id is %q, but the key names %q", rec.ID, allocID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: allocation %q: %v; delete the key "+
			"with etcdctl", service.ErrConflict, allocID, err)
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
