package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// maxRegisterRaces bounds how often registration retries at once after
// another writer changed the status key between the read and the
// transaction.
const maxRegisterRaces = 5

// holderPoll is the longest pause between two checks of another agent's
// lease while waiting for it to expire.
const holderPoll = 500 * time.Millisecond

// errRaced means the status key changed between the read and the
// registration transaction.
var errRaced = errors.New("status key changed during registration")

// register waits until the status key is free or ours, grants a lease and
// writes both documents in one transaction, then starts the keepalive.
func (a *Agent) register(ctx context.Context) (*session, error) {
	for range maxRegisterRaces {
		sess, err := a.tryRegister(ctx)
		if !errors.Is(err, errRaced) {
			return sess, err
		}
		a.log.Info("status key changed during registration; trying again")
	}
	return nil, fmt.Errorf("register: %w %d times in a row", errRaced,
		maxRegisterRaces)
}

func (a *Agent) tryRegister(ctx context.Context) (*session, error) {
	holder, err := a.waitForStatusKey(ctx)
	if err != nil {
		return nil, err
	}
	status, err := a.sample(ctx)
	if err != nil {
		return nil, err
	}
	lease, err := a.grant(ctx)
	if err != nil {
		return nil, err
	}

	info := a.cfg.Info
	info.RegisteredAt = a.cfg.Now().UTC()
	info.StoppedAt = nil
	if err := a.registerTxn(ctx, holder, lease, &info, status); err != nil {
		a.revoke(lease, a.cleanupTimeout(ctx))
		return nil, err
	}
	if holder != nil && holder.Lease != 0 && holder.Lease != int64(lease) {
		// The key was attached to an earlier lease of this process,
		// which etcd keeps alive until its TTL ends; release it now.
		a.revoke(clientv3.LeaseID(holder.Lease), a.cleanupTimeout(ctx))
	}

	sess, err := a.startSession(ctx, lease, info, status)
	if err != nil {
		a.revoke(lease, a.cleanupTimeout(ctx))
		return nil, err
	}
	a.log.Info("registered", "lease_id", fmt.Sprintf("%x", int64(lease)),
		"ttl", a.cfg.TTL, "replaced_status_key", holder != nil)
	a.obs.Registered(lease)
	a.obs.StatusWritten(WriteRegistered)
	a.registered = true
	a.statusWritten()
	return sess, nil
}

func (a *Agent) grant(ctx context.Context) (clientv3.LeaseID, error) {
	cctx, cancel := a.call(ctx)
	defer cancel()
	resp, err := a.cli.Grant(cctx, int64(a.cfg.TTL/time.Second))
	if err != nil {
		a.obs.EtcdError("grant", err)
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	return resp.ID, nil
}

// registerTxn writes info and status only if the status key is still as
// read: absent, or unchanged since it was read as ours.
func (a *Agent) registerTxn(ctx context.Context, holder *mvccpb.KeyValue,
	lease clientv3.LeaseID, info *keyspace.HostInfo,
	status keyspace.HostStatus) error {
	infoVal, err := keyspace.Encode(info)
	if err != nil {
		return err
	}
	statusVal, err := keyspace.Encode(status)
	if err != nil {
		return err
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(a.statusKey), "=", 0)
	if holder != nil {
		cmp = clientv3.Compare(clientv3.ModRevision(a.statusKey), "=",
			holder.ModRevision)
	}

	cctx, cancel := a.call(ctx)
	defer cancel()
	resp, err := a.cli.Txn(cctx).If(cmp).Then(
		clientv3.OpPut(a.infoKey, infoVal),
		clientv3.OpPut(a.statusKey, statusVal, clientv3.WithLease(lease)),
	).Commit()
	if err != nil {
		a.obs.EtcdError("register", err)
		return fmt.Errorf("register host %q: %w", a.cfg.Info.ID, err)
	}
	if !resp.Succeeded {
		return errRaced
	}
	return nil
}

// waitForStatusKey returns the current status key when this process may
// overwrite it, or nil when it is absent. While another agent's lease
// holds the key it waits for that lease to expire, and gives up with
// HostIDInUseError when the lease outlives its TTL plus a grace period.
func (a *Agent) waitForStatusKey(ctx context.Context) (*mvccpb.KeyValue, error) {
	var w holderWait
	for {
		kv, err := a.getStatus(ctx)
		if err != nil || kv == nil || a.ownsStatus(kv) {
			return kv, err
		}
		if kv.Lease == 0 {
			a.log.Warn("status key has no lease; overwriting it",
				"revision", kv.ModRevision)
			return kv, nil
		}

		remaining, granted, err := a.leaseTTL(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return nil, err
		}
		pause, err := w.next(a, kv, remaining, granted)
		if err != nil {
			return nil, err
		}
		if !sleepCtx(ctx, pause) {
			return nil, ctx.Err()
		}
	}
}

// holderWait tracks how long another agent's lease has held the status key.
type holderWait struct {
	lease     int64
	firstSeen time.Time
}

// next returns the pause before the next check, or HostIDInUseError once
// the holder's lease has outlived its granted TTL plus a grace period.
func (w *holderWait) next(a *Agent, kv *mvccpb.KeyValue,
	remaining, granted time.Duration) (time.Duration, error) {
	now := a.cfg.Now()
	holder := holderInstance(kv)
	if w.lease != kv.Lease {
		w.lease, w.firstSeen = kv.Lease, now
		a.log.Warn("status key held by another agent; waiting for its "+
			"lease to expire", "holder_instance_id", holder,
			"lease_id", fmt.Sprintf("%x", kv.Lease), "remaining", remaining)
	}
	if remaining <= 0 {
		// Expired; etcd deletes the key within moments.
		return 100 * time.Millisecond, nil
	}
	grace := max(time.Second, granted/2)
	if now.Sub(w.firstSeen) > granted+grace {
		return 0, &HostIDInUseError{
			HostID:     a.cfg.Info.ID,
			InstanceID: holder,
			LeaseID:    clientv3.LeaseID(kv.Lease),
		}
	}
	return min(remaining, holderPoll), nil
}

// ownsStatus reports whether this process wrote the status key, possibly
// under an earlier lease.
func (a *Agent) ownsStatus(kv *mvccpb.KeyValue) bool {
	return holderInstance(kv) == a.instanceID
}

// holderInstance returns the instance ID in a status value, or "unknown".
func holderInstance(kv *mvccpb.KeyValue) string {
	st, err := keyspace.DecodeHostStatus(string(kv.Key), kv.Value)
	if err != nil || st.InstanceID == "" {
		return "unknown"
	}
	return st.InstanceID
}

func (a *Agent) getStatus(ctx context.Context) (*mvccpb.KeyValue, error) {
	cctx, cancel := a.call(ctx)
	defer cancel()
	resp, err := a.cli.Get(cctx, a.statusKey)
	if err != nil {
		a.obs.EtcdError("get status", err)
		return nil, fmt.Errorf("read %s: %w", a.statusKey, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0], nil
}

// leaseTTL returns a lease's remaining and granted TTL; a lease that no
// longer exists has a remaining TTL of zero.
func (a *Agent) leaseTTL(ctx context.Context,
	id clientv3.LeaseID) (remaining, granted time.Duration, err error) {
	cctx, cancel := a.call(ctx)
	defer cancel()
	resp, err := a.cli.TimeToLive(cctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		a.obs.EtcdError("lease ttl", err)
		return 0, 0, fmt.Errorf("read TTL of lease %x: %w", int64(id), err)
	}
	if resp.TTL <= 0 {
		return 0, 0, nil
	}
	return time.Duration(resp.TTL) * time.Second,
		time.Duration(resp.GrantedTTL) * time.Second, nil
}

// cleanupTimeout bounds a revocation after a failed step: StopTimeout
// once ctx has ended, so shutdown stays quick.
func (a *Agent) cleanupTimeout(ctx context.Context) time.Duration {
	if ctx.Err() != nil {
		return StopTimeout
	}
	return a.callTimeout
}

// revoke releases a lease, best effort, within timeout.
func (a *Agent) revoke(id clientv3.LeaseID, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := a.cli.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		a.obs.EtcdError("revoke", err)
		a.log.Warn("revoke lease", "lease_id", fmt.Sprintf("%x", int64(id)),
			"error", err)
	}
}

// deregister marks the host stopped and removes its status in one
// transaction that only applies while the status key is still attached to
// the session's lease, then revokes the lease. Both steps share
// StopTimeout, so shutdown is quick even when etcd is unreachable.
func (a *Agent) deregister(sess *session) {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	log := a.log.With("lease_id", fmt.Sprintf("%x", int64(sess.lease)))

	err := a.stopTxn(ctx, sess)
	if err != nil {
		a.obs.EtcdError("deregister", err)
		log.Warn("mark host stopped; its status key expires with the lease",
			"error", err)
	}
	if remaining := time.Until(deadline(ctx)); remaining > 0 {
		a.revoke(sess.lease, remaining)
	}
	if err == nil {
		log.Info("deregistered: status removed, info marked stopped")
	}
}

func (a *Agent) stopTxn(ctx context.Context, sess *session) error {
	info := sess.info
	stopped := a.cfg.Now().UTC()
	info.StoppedAt = &stopped
	infoVal, err := keyspace.Encode(info)
	if err != nil {
		return err
	}

	// Leave most of the budget for the transaction; revoking is optional
	// once the status key is gone.
	cctx, cancel := context.WithTimeout(ctx, StopTimeout*7/10)
	defer cancel()
	resp, err := a.cli.Txn(cctx).If(
		clientv3.Compare(clientv3.LeaseValue(a.statusKey), "=", sess.lease),
	).Then(
		clientv3.OpPut(a.infoKey, infoVal),
		clientv3.OpDelete(a.statusKey),
	).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errors.New("status key is no longer attached to this agent's lease")
	}
	return nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
