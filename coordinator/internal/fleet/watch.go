package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Backoff between a failed watch or list and the next list.
const (
	relistBackoffMin = 100 * time.Millisecond
	relistBackoffMax = 5 * time.Second
)

// errWatchClosed is returned when the watch channel closes without an
// error, for example after the member lost its leader.
var errWatchClosed = errors.New("watch channel closed")

// Run lists the keyspace, then watches it and applies every change to the
// view until ctx ends. After a watch error, a cancelled watch or a
// compacted revision it lists again, after a jittered backoff, and
// resumes from the new list. Meanwhile it runs the sweep that expires,
// marks lost, restores and releases allocations (see the package
// documentation). It returns nil when ctx ends, after the sweep stopped;
// it is meant to be called once per Fleet.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.runSweep(ctx)
	}()
	defer wg.Wait()
	defer cancel()
	return f.runWatch(ctx)
}

// runWatch is Run's list and watch loop.
func (f *Fleet) runWatch(ctx context.Context) error {
	backoff := relistBackoffMin
	for {
		rev, err := f.list(ctx)
		if err == nil {
			backoff = relistBackoffMin
			err = f.watchFrom(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return nil
		}

		f.counts.relists.Add(1)
		f.obs.Relisted(relistReason(err))
		wait := jitter(backoff)
		f.log.Warn("etcd watch or list failed; listing again",
			"err", err, "revision", rev, "retry_in", wait)
		backoff = min(2*backoff, relistBackoffMax)

		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// relistReason names the cause of a re-list for metrics.
func relistReason(err error) string {
	switch {
	case errors.Is(err, errCompacted):
		return RelistCompacted
	case errors.Is(err, errWatchClosed):
		return RelistClosed
	default:
		return RelistError
	}
}

// jitter returns d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

// list replaces the view with a linearizable read of the whole keyspace
// and returns the read's revision.
func (f *Fleet) list(ctx context.Context) (int64, error) {
	callCtx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
	defer cancel()
	resp, err := f.client.Get(callCtx, f.ks.Root(), clientv3.WithPrefix())
	if err != nil {
		f.etcdError(OpList)
		return 0, fmt.Errorf("list %q: %w", f.ks.Root(), err)
	}

	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()

	old := f.view
	next := newView(f.ks)
	f.keepReportsLocked(resp.Kvs)
	for _, kv := range resp.Kvs {
		if _, err := next.put(kv, now); err != nil {
			f.reportInvalidLocked(string(kv.Key), kv.ModRevision, err)
		}
	}
	next.rev = resp.Header.Revision
	next.carryLiveness(old, now)
	f.view = next

	f.forgetVanishedLocked(old)
	f.syncHostsLocked(hostIDs(next))
	f.ready = true
	f.advanceLocked()
	f.wakeSweep()

	f.log.Info("listed fleet state from etcd", "revision", next.rev,
		"keys", len(resp.Kvs), "hosts", f.manager.Len())
	return next.rev, nil
}

// keepReportsLocked drops the logged invalid keys that the list no longer
// contains at the same revision.
func (f *Fleet) keepReportsLocked(kvs []*mvccpb.KeyValue) {
	listed := make(map[string]int64, len(kvs))
	for _, kv := range kvs {
		listed[string(kv.Key)] = kv.ModRevision
	}
	for key, rev := range f.reported {
		if listed[key] != rev {
			delete(f.reported, key)
		}
	}
}

// forgetVanishedLocked removes hosts that were registered in old and
// whose keys are all gone from the new view.
func (f *Fleet) forgetVanishedLocked(old *view) {
	for id, h := range old.hosts {
		if _, ok := f.view.hosts[id]; ok || h.health.status == "" {
			continue
		}
		f.log.Warn("host removed from the view", "host_id", id,
			"revision", f.view.rev, "reason", "its keys were deleted")
		_ = f.manager.UnregisterHost(id)
	}
}

func hostIDs(v *view) map[string]struct{} {
	ids := make(map[string]struct{}, len(v.hosts))
	for id := range v.hosts {
		ids[id] = struct{}{}
	}
	return ids
}

// errCompacted marks a watch that started at a compacted revision.
var errCompacted = errors.New("revision compacted")

// watchFrom applies watch events from rev on until the watch fails, and
// returns why it ended.
func (f *Fleet) watchFrom(ctx context.Context, rev int64) error {
	if f.beforeWatch != nil {
		f.beforeWatch(ctx)
	}

	// WithRequireLeader ends the watch when the member loses its
	// leader, instead of leaving it silent on a partitioned member.
	watchCtx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := f.client.Watch(watchCtx, f.ks.Root(), clientv3.WithPrefix(),
		clientv3.WithRev(rev), clientv3.WithPrevKV())

	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch from revision %d: %w at %d",
				rev, errCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			f.etcdError(OpWatch)
			return fmt.Errorf("watch from revision %d: %w", rev, err)
		}
		if resp.Canceled {
			return fmt.Errorf("watch from revision %d: cancelled by "+
				"the server", rev)
		}
		f.applyEvents(resp.Events)
	}
	return fmt.Errorf("watch from revision %d: %w", rev, errWatchClosed)
}

// applyEvents applies one watch response. Events at a revision below the
// view's are skipped; the per-key revision checks in view make a repeated
// event harmless.
func (f *Fleet) applyEvents(events []*clientv3.Event) {
	if len(events) == 0 {
		return
	}
	now := f.now()

	f.mu.Lock()
	defer f.mu.Unlock()

	touched := make(map[string]struct{})
	for _, ev := range events {
		rev, key := ev.Kv.ModRevision, string(ev.Kv.Key)
		if rev < f.view.rev {
			continue
		}

		var hostID string
		switch ev.Type {
		case mvccpb.PUT:
			var err error
			hostID, err = f.view.put(ev.Kv, now)
			if err != nil {
				f.reportInvalidLocked(key, rev, err)
			}
		case mvccpb.DELETE:
			hostID = f.view.remove(key, rev, now)
			delete(f.reported, key)
			if strings.HasPrefix(key, f.ks.AllocationLeasesPrefix()) {
				f.wakeSweep()
			}
		}
		if hostID != "" {
			touched[hostID] = struct{}{}
		}
		f.view.rev = max(f.view.rev, rev)
	}

	// Health is computed once per response, so the two writes of an
	// agent's stop transaction read as one change.
	f.syncHostsLocked(touched)
	f.advanceLocked()
}

// reportInvalidLocked logs an invalid key once per revision. The caller
// holds f.mu for writing.
func (f *Fleet) reportInvalidLocked(key string, rev int64, err error) {
	if logged, ok := f.reported[key]; ok && logged == rev {
		return
	}
	f.reported[key] = rev
	f.log.Warn("skipping invalid key", "key", key, "revision", rev,
		"err", err)
}

// advanceLocked wakes the callers of waitForRevision.
func (f *Fleet) advanceLocked() {
	close(f.revChanged)
	f.revChanged = make(chan struct{})
}

// waitForRevision waits until the view has applied rev, so a caller sees
// its own write, or until ctx ends or CallTimeout passes. It gives up
// silently: the write is committed either way.
func (f *Fleet) waitForRevision(ctx context.Context, rev int64) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
	defer cancel()
	for {
		f.mu.RLock()
		cur, changed := f.view.rev, f.revChanged
		f.mu.RUnlock()
		if cur >= rev {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
