package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// allocationRead is an allocation record and its lease key, read in one
// linearizable transaction.
type allocationRead struct {
	rec *keyspace.Allocation
	rev int64
	// lease is the etcd lease of the lease key; leaseRev is that key's
	// ModRevision. Both are 0 when the key is absent.
	lease    clientv3.LeaseID
	leaseRev int64
}

// readAllocationLease reads an allocation record with its lease key.
func (f *Fleet) readAllocationLease(
	ctx context.Context, op, allocID string,
) (allocationRead, error) {
	key := f.ks.Allocation(allocID)
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).Then(
		clientv3.OpGet(key),
		clientv3.OpGet(f.ks.AllocationLease(allocID)),
	).Commit()
	if err != nil {
		return allocationRead{}, f.unavailable(op,
			fmt.Sprintf("read allocation %q", allocID), err)
	}

	recKVs := resp.Responses[0].GetResponseRange().Kvs
	if len(recKVs) == 0 {
		return allocationRead{}, fmt.Errorf("%w: allocation %q does not "+
			"exist", service.ErrNotFound, allocID)
	}
	rec, err := decodeRecord(key, allocID, recKVs[0].Value)
	if err != nil {
		return allocationRead{}, err
	}
	rd := allocationRead{rec: rec, rev: recKVs[0].ModRevision}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		rd.lease = clientv3.LeaseID(kvs[0].Lease)
		rd.leaseRev = kvs[0].ModRevision
	}
	return rd, nil
}

// decodeRecord decodes the record at key and checks that it names allocID.
func decodeRecord(key, allocID string, value []byte) (*keyspace.Allocation, error) {
	rec, err := keyspace.DecodeAllocation(key, value)
	if err == nil && rec.ID != allocID {
		err = fmt.Errorf("id is %q, but the key names %q", rec.ID, allocID)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: allocation %q: %v; delete the key "+
			"with etcdctl", service.ErrConflict, allocID, err)
	}
	return rec, nil
}

// Renew keeps an allocation with a TTL alive: it renews the allocation's
// etcd lease to its full TTL with one KeepAliveOnce and moves the
// record's expires_at TTLSeconds past now. An allocation whose lease
// already expired is marked expired, if no coordinator did so yet, and
// Renew returns an ErrConflict error.
func (f *Fleet) Renew(ctx context.Context, allocID string) (api.Allocation, error) {
	if err := checkID("allocation", allocID); err != nil {
		return api.Allocation{}, err
	}

	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		renewed, done, err := f.renewOnce(ctx, allocID)
		if err != nil || done {
			return renewed, err
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

// renewOnce makes one renewal attempt; done is false when the record
// changed between the read and the write.
func (f *Fleet) renewOnce(
	ctx context.Context, allocID string,
) (api.Allocation, bool, error) {
	rd, err := f.readAllocationLease(ctx, OpRenew, allocID)
	if err != nil {
		return api.Allocation{}, true, err
	}
	if err := renewable(rd.rec); err != nil {
		return api.Allocation{}, true, err
	}
	if rd.leaseRev == 0 {
		return api.Allocation{}, true, f.expireForRenew(ctx, rd.rec)
	}

	callCtx, cancel := f.callContext(ctx)
	_, err = f.client.KeepAliveOnce(callCtx, rd.lease)
	cancel()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return api.Allocation{}, true, f.expireForRenew(ctx, rd.rec)
	}
	if err != nil {
		return api.Allocation{}, true, f.unavailable(OpRenew,
			fmt.Sprintf("renew the lease of allocation %q", allocID), err)
	}

	renewed := *rd.rec
	expires := f.now().UTC().Add(time.Duration(rd.rec.TTLSeconds) * time.Second)
	renewed.ExpiresAt = &expires
	done, err := f.putIfUnchanged(ctx, OpRenew, &renewed, rd.rev)
	if err != nil || !done {
		return api.Allocation{}, done, err
	}
	f.log.Debug("allocation renewed", "alloc_id", allocID,
		"host_id", renewed.HostID, "expires_at", formatTime(expires))
	return toAPIAllocation(&renewed), true, nil
}

// renewable rejects a record that Renew cannot extend.
func renewable(rec *keyspace.Allocation) error {
	switch {
	case rec.State == keyspace.StateExpired:
		return expiredError(rec)
	case !isActiveState(rec.State):
		return fmt.Errorf("%w: allocation %q is %s; allocate again",
			service.ErrConflict, rec.ID, rec.State)
	case rec.TTLSeconds == 0:
		return fmt.Errorf("%w: allocation %q has no TTL; it lives until "+
			"released, so there is nothing to renew. To get an allocation "+
			"that expires, request a new one with ttl_seconds (allocate "+
			"--ttl in the CLI)", service.ErrInvalid, rec.ID)
	}
	return nil
}

// expiredError returns the ErrConflict for an expired allocation, which
// directs its holder to request a new one.
func expiredError(rec *keyspace.Allocation) error {
	at := "an unknown time"
	if rec.ExpiresAt != nil {
		at = formatTime(*rec.ExpiresAt)
	}
	return fmt.Errorf("%w: allocation %q expired at %s; request a new one",
		service.ErrConflict, rec.ID, at)
}

// expireForRenew expires an allocation whose lease is gone and returns
// the error for the Renew that found it.
func (f *Fleet) expireForRenew(
	ctx context.Context, rec *keyspace.Allocation,
) error {
	ended, _, err := f.finish(ctx, rec.ID, endExpire)
	if err != nil {
		return err
	}
	if ended.State == keyspace.StateExpired {
		return expiredError(ended)
	}
	return fmt.Errorf("%w: allocation %q is %s; allocate again",
		service.ErrConflict, rec.ID, ended.State)
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

// grantAllocationLease grants the etcd lease of a new allocation with a
// TTL. etcd raises a TTL below its minimum, about 1.5 × the election
// timeout, so a 1 s allocation may live about 2 s.
func (f *Fleet) grantAllocationLease(
	ctx context.Context, ttlSeconds int64,
) (clientv3.LeaseID, error) {
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Grant(callCtx, ttlSeconds)
	if err != nil {
		return 0, f.unavailable(OpLease, "grant the lease of a new "+
			"allocation", err)
	}
	return resp.ID, nil
}

// revokeAllocationLease revokes the lease of an allocation that ended,
// best effort: an unrevoked lease only expires later with no key on it.
func (f *Fleet) revokeAllocationLease(
	ctx context.Context, allocID string, id clientv3.LeaseID,
) {
	if id == 0 {
		return
	}
	callCtx, cancel := f.callContext(context.WithoutCancel(ctx))
	defer cancel()
	_, err := f.client.Revoke(callCtx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		f.etcdError(OpLease)
		f.log.Debug("revoke allocation lease; it expires on its own",
			"alloc_id", allocID, "lease_id", fmt.Sprintf("%x", int64(id)),
			"err", err)
	}
}
