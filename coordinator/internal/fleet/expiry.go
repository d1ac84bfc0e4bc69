package fleet

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// refreshExpiry moves the expires_at of an active allocation to the end
// of its etcd lease when expires_at has passed but the lease is still
// alive. That happens after an etcd restart or leader change, because
// etcd then renews every lease to its full TTL. The write is guarded by
// the record's and the lease key's revisions, so a record that changed
// meanwhile, or that another coordinator already rewrote, stays as it is.
func (f *Fleet) refreshExpiry(ctx context.Context, allocID string) error {
	rd, err := f.readAllocationLease(ctx, OpRefreshExpiry, allocID)
	if err != nil {
		return ignoreNotFound(err)
	}
	rec := rd.rec
	now := f.now().UTC()
	if !isActiveState(rec.State) || rec.TTLSeconds == 0 || rd.leaseRev == 0 ||
		rec.ExpiresAt == nil || !now.After(*rec.ExpiresAt) {
		return nil
	}

	remaining, err := f.leaseRemaining(ctx, allocID, rd.lease)
	if err != nil || remaining <= 0 {
		// A lease at or past its end is about to be revoked, and the
		// sweep expires the allocation once its lease key is gone.
		return err
	}
	// etcd truncates the remaining TTL to whole seconds. Adding one
	// keeps expires_at at or after the lease's end, as after a renewal.
	expires := now.Add(remaining + time.Second)
	next := *rec
	next.ExpiresAt = &expires
	value, err := keyspace.Encode(&next)
	if err != nil {
		return err
	}

	key := f.ks.Allocation(allocID)
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(
		clientv3.Compare(clientv3.ModRevision(key), "=", rd.rev),
		clientv3.Compare(clientv3.ModRevision(f.ks.AllocationLease(allocID)),
			"=", rd.leaseRev),
	).Then(clientv3.OpPut(key, value)).Commit()
	if err != nil {
		return f.unavailable(OpRefreshExpiry, fmt.Sprintf("update the "+
			"expires_at of allocation %q", allocID), err)
	}
	if !resp.Succeeded {
		f.casConflict(OpRefreshExpiry)
		return nil
	}

	f.waitForRevision(ctx, resp.Header.Revision)
	f.log.Info("allocation expires_at moved to the end of its lease",
		"alloc_id", allocID, "host_id", rec.HostID, "owner", rec.Owner,
		"old_expires_at", formatTime(*rec.ExpiresAt),
		"expires_at", formatTime(expires),
		"reason", "etcd renewed the lease to its full TTL, as it does "+
			"after a restart or a leader change")
	return nil
}

// leaseRemaining returns the time left on an allocation's lease, whole
// seconds only, or a negative duration when the lease is gone.
func (f *Fleet) leaseRemaining(
	ctx context.Context, allocID string, lease clientv3.LeaseID,
) (time.Duration, error) {
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.TimeToLive(callCtx, lease)
	if err != nil {
		return 0, f.unavailable(OpRefreshExpiry, fmt.Sprintf("read the "+
			"lease TTL of allocation %q", allocID), err)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}
