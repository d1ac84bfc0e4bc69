package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Bounds of the sweep interval derived from the lost periods.
const (
	minSweepInterval = 100 * time.Millisecond
	maxSweepInterval = 10 * time.Second
)

// deriveSweepInterval returns a quarter of the shorter lost period,
// within [minSweepInterval, maxSweepInterval], so a host's allocations
// turn lost at most a quarter of the grace period late.
func deriveSweepInterval(grace, releaseAfter time.Duration) time.Duration {
	d := grace
	if releaseAfter > 0 {
		d = min(d, releaseAfter)
	}
	return min(max(d/4, minSweepInterval), maxSweepInterval)
}

// checkLifetime validates the lost and sweep settings.
func (cfg Config) checkLifetime() error {
	switch {
	case cfg.LostGracePeriod < 0:
		return fmt.Errorf("invalid --lost-grace-period %s: must be "+
			"positive, or 0 for the default %s", cfg.LostGracePeriod,
			DefaultLostGracePeriod)
	case cfg.LostReleaseAfter < 0:
		return fmt.Errorf("invalid --lost-release-after %s: must be "+
			"positive, or 0 to keep lost allocations until released",
			cfg.LostReleaseAfter)
	case cfg.SweepInterval < 0:
		return fmt.Errorf("fleet config: SweepInterval is %s, must not "+
			"be negative", cfg.SweepInterval)
	}
	return nil
}

// wakeSweep requests a sweep soon. It never blocks.
func (f *Fleet) wakeSweep() {
	select {
	case f.sweepWake <- struct{}{}:
	default:
	}
}

// runSweep sweeps every SweepInterval and whenever woken, until ctx ends.
func (f *Fleet) runSweep(ctx context.Context) {
	ticker := time.NewTicker(f.cfg.SweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-f.sweepWake:
		}
		if f.Ready() {
			f.sweep(ctx)
		}
		f.sweeps.Add(1)
	}
}

// sweepPlan lists the allocations whose state should change according
// to the view. Each change is checked again on a linearizable read and
// committed with a compare-and-swap, so a stale view or a second
// coordinator doing the same work changes nothing twice.
type sweepPlan struct {
	expire []string
	// refresh lists active allocations whose expires_at passed while
	// their lease is still alive.
	refresh []string
	lose    []string
	restore []string
	release []string
}

// sweep applies one sweepPlan. It stops at the first error, which it
// logs; the next sweep tries again.
func (f *Fleet) sweep(ctx context.Context) {
	p := f.planSweep()
	steps := []struct {
		op  string
		ids []string
		do  func(context.Context, string) error
	}{
		{OpExpire, p.expire, f.expireAllocation},
		{OpRefreshExpiry, p.refresh, f.refreshExpiry},
		{OpLost, p.lose, f.markLost},
		{OpRestore, p.restore, f.restoreLost},
		{OpRelease, p.release, f.releaseLost},
	}
	for _, step := range steps {
		for _, id := range step.ids {
			err := step.do(ctx, id)
			if err == nil || ctx.Err() != nil {
				continue
			}
			f.log.Warn("allocation sweep stopped; retrying at the "+
				"next sweep", "op", step.op, "alloc_id", id, "err", err)
			return
		}
	}
}

// planSweep reads the view and decides what to change. Lists are
// shuffled so that coordinators sweeping at once spread their work.
func (f *Fleet) planSweep() sweepPlan {
	now := f.now()
	var p sweepPlan

	f.mu.RLock()
	for id, e := range f.view.allocs {
		rec := e.rec
		if !isActiveState(rec.State) {
			continue
		}
		if _, ok := f.view.leases[id]; rec.TTLSeconds > 0 && !ok {
			p.expire = append(p.expire, id)
			continue
		}
		if rec.TTLSeconds > 0 && rec.ExpiresAt != nil &&
			now.After(*rec.ExpiresAt) {
			p.refresh = append(p.refresh, id)
		}
		f.planHostLocked(&p, rec, now)
	}
	f.mu.RUnlock()

	for _, ids := range [][]string{p.expire, p.refresh, p.lose, p.restore,
		p.release} {
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	return p
}

// planHostLocked adds rec to p when its host's liveness calls for a
// change. The caller holds f.mu.
func (f *Fleet) planHostLocked(
	p *sweepPlan, rec *keyspace.Allocation, now time.Time,
) {
	h, ok := f.view.hosts[rec.HostID]
	if !ok || h.info == nil {
		return
	}
	switch {
	case rec.State == keyspace.StateActive && h.statusRev == 0 &&
		!h.downSince.IsZero() &&
		now.Sub(h.downSince) >= f.cfg.LostGracePeriod:
		p.lose = append(p.lose, rec.ID)
	case rec.State == keyspace.StateLost && h.statusRev > 0 &&
		h.statusErr == nil:
		p.restore = append(p.restore, rec.ID)
	case rec.State == keyspace.StateLost && f.cfg.LostReleaseAfter > 0 &&
		rec.LostAt != nil && now.Sub(*rec.LostAt) >= f.cfg.LostReleaseAfter:
		p.release = append(p.release, rec.ID)
	}
}

// expireAllocation expires an allocation whose lease key is gone.
func (f *Fleet) expireAllocation(ctx context.Context, allocID string) error {
	_, _, err := f.finish(ctx, allocID, endExpire)
	return ignoreNotFound(err)
}

// releaseLost releases a lost allocation once LostReleaseAfter passed.
func (f *Fleet) releaseLost(ctx context.Context, allocID string) error {
	end := ending{op: OpRelease, state: keyspace.StateReleased,
		verb:    "lost allocation released",
		reason:  fmt.Sprintf("lost for at least %s", f.cfg.LostReleaseAfter),
		lostFor: f.cfg.LostReleaseAfter}
	_, _, err := f.finish(ctx, allocID, end)
	return ignoreNotFound(err)
}

// markLost marks an active allocation lost while its host has no status
// key. Its ledger entry stays, so its resources stay reserved.
func (f *Fleet) markLost(ctx context.Context, allocID string) error {
	return f.moveState(ctx, OpLost, allocID, keyspace.StateActive,
		func(rec *keyspace.Allocation) clientv3.Cmp {
			now := f.now().UTC()
			rec.State, rec.LostAt = keyspace.StateLost, &now
			return clientv3.Compare(clientv3.CreateRevision(
				f.ks.HostStatus(rec.HostID)), "=", 0)
		})
}

// restoreLost makes a lost allocation active again once its host has a
// status key again.
func (f *Fleet) restoreLost(ctx context.Context, allocID string) error {
	return f.moveState(ctx, OpRestore, allocID, keyspace.StateLost,
		func(rec *keyspace.Allocation) clientv3.Cmp {
			rec.State, rec.LostAt = keyspace.StateActive, nil
			return clientv3.Compare(clientv3.CreateRevision(
				f.ks.HostStatus(rec.HostID)), ">", 0)
		})
}

// moveState changes a record in state from with one compare-and-swap:
// change edits the record and returns the compare on its host's status
// key. A record in another state, or a lost compare, changes nothing;
// the next sweep judges the allocation again.
func (f *Fleet) moveState(
	ctx context.Context, op, allocID, from string,
	change func(*keyspace.Allocation) clientv3.Cmp,
) error {
	rec, rev, err := f.readAllocation(ctx, op, allocID)
	if err != nil {
		return ignoreNotFound(err)
	}
	if rec.State != from {
		return nil
	}
	next := *rec
	hostCmp := change(&next)
	value, err := keyspace.Encode(&next)
	if err != nil {
		return err
	}

	key := f.ks.Allocation(allocID)
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(
		clientv3.Compare(clientv3.ModRevision(key), "=", rev), hostCmp,
	).Then(clientv3.OpPut(key, value)).Commit()
	if err != nil {
		return f.unavailable(op, fmt.Sprintf("mark allocation %q %s",
			allocID, next.State), err)
	}
	if !resp.Succeeded {
		f.casConflict(op)
		return nil
	}

	f.waitForRevision(ctx, resp.Header.Revision)
	f.logMoved(&next, from, resp.Header.Revision)
	return nil
}

// logMoved logs and counts a change between active and lost.
func (f *Fleet) logMoved(rec *keyspace.Allocation, from string, rev int64) {
	attrs := []any{"alloc_id", rec.ID, "host_id", rec.HostID,
		"owner", rec.Owner, "revision", rev}
	if rec.State == keyspace.StateLost {
		f.counts.lost.Add(1)
		reason := fmt.Sprintf("host has had no status key for at least %s",
			f.cfg.LostGracePeriod)
		f.log.Warn("allocation lost", append(attrs, "reason", reason)...)
		f.stateChanged(from, rec.State, reason)
		return
	}
	f.counts.restored.Add(1)
	f.log.Info("lost allocation active again", append(attrs,
		"reason", "host is heartbeating again")...)
	f.stateChanged(from, rec.State, "host returned")
}

// ignoreNotFound drops ErrNotFound: a record that vanished needs no
// change.
func ignoreNotFound(err error) error {
	if errors.Is(err, service.ErrNotFound) {
		return nil
	}
	return err
}
