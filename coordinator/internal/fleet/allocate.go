package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// conflictPause is the upper bound of the random pause after the first
// lost compare-and-swap; later pauses grow linearly with the attempt.
const conflictPause = 5 * time.Millisecond

// Select returns the host and GPUs that Allocate would pick now, from the
// view alone, without writing anything. For round_robin it advances the
// rotation as an allocation would.
func (f *Fleet) Select(
	ctx context.Context, req api.AllocationRequest,
) (api.Selection, error) {
	r, err := f.parseRequest(req)
	if err != nil {
		return api.Selection{}, err
	}
	if err := f.checkReady(); err != nil {
		return api.Selection{}, err
	}
	hostID, err := f.chooseHost(r, nil, nil)
	if err != nil {
		return api.Selection{}, err
	}

	f.mu.RLock()
	defer f.mu.RUnlock()
	h, ok := f.view.hosts[hostID]
	if !ok || h.info == nil {
		return api.Selection{}, fmt.Errorf("%w: host %q left the view "+
			"during selection; retry", service.ErrNoCapacity, hostID)
	}
	gpus := f.freeGPUs(h, r)
	return api.Selection{
		Host: f.apiHostLocked(h),
		GPUs: allocatedGPUs(gpus[:min(r.GPU, len(gpus))]),
	}, nil
}

// chooseHost returns the ID of the host to try r on: the best host by
// r's strategy that is not in raced, or the best one when every host
// that can take r is in raced. fresh holds hosts re-read from etcd that
// turned out unable to take r. They replace the view's state of those
// hosts. When no host fits, the error wraps ErrNoCapacity and names the
// short resource.
func (f *Fleet) chooseHost(
	r request, fresh map[string]*hostState, raced map[string]bool,
) (string, error) {
	buf := candidateBuffers.Get().(*candidateBuffer)
	defer buf.release()
	candidates, err := f.candidates(r, fresh, buf)
	if err != nil {
		return "", err
	}

	if len(raced) > 0 && pickIgnoresOthers[r.Strategy] {
		// The best host not in raced is the best host among those not
		// in raced, or, when all are in raced, the best host.
		if rest := slices.DeleteFunc(candidates, func(h *host.HostInfo) bool {
			return raced[h.ID]
		}); len(rest) > 0 {
			candidates = rest
		} else {
			candidates = buf.pointers()
		}
		raced = nil
	}

	want := host.ResourceRequirement{CPU: r.CPU, Memory: r.Memory, GPU: r.GPU}
	selector := f.rankers[r.Strategy]
	if len(raced) == 0 {
		// Select returns the host that Rank puts first, without
		// scoring, sorting and copying every candidate.
		best, err := selector.Select(candidates, want)
		if err != nil {
			return "", fmt.Errorf("%w: rank hosts: %w",
				service.ErrNoCapacity, err)
		}
		return best.ID, nil
	}
	ranked, err := selector.Rank(candidates, want)
	if err != nil {
		return "", fmt.Errorf("%w: rank hosts: %w", service.ErrNoCapacity, err)
	}
	for _, h := range ranked {
		if !raced[h.ID] {
			return h.ID, nil
		}
	}
	return ranked[0].ID, nil
}

// candidates returns the hosts that can take r in pkg/host form, in
// storage from buf. fresh is as for chooseHost. When no host fits, the
// error wraps ErrNoCapacity and names the short resource.
func (f *Fleet) candidates(
	r request, fresh map[string]*hostState, buf *candidateBuffer,
) ([]*host.HostInfo, error) {
	var s shortage

	f.mu.RLock()
	buf.infos = slices.Grow(buf.infos[:0], len(f.view.hosts))
	for id, h := range f.view.hosts {
		if re, ok := fresh[id]; ok {
			h = re
			s.fresh = append(s.fresh, freshNote(re, r, f))
		}
		v := f.judge(h, r)
		s.add(v)
		if v.verdict == fits {
			buf.infos = append(buf.infos, candidate(h, v))
		}
	}
	f.mu.RUnlock()

	if len(buf.infos) == 0 {
		return nil, s.err(r)
	}
	return buf.pointers(), nil
}

// pickIgnoresOthers lists the strategies whose pick among some hosts
// does not depend on the hosts left out, so chooseHost may drop the hosts
// lost in a race and Select from the rest. Under least_used and bin_pack
// a host's score depends on that host alone, and random picks uniformly.
// most_free scales each resource by the largest candidate's total, and
// round_robin's Rank moves the rotation to the best host even when that
// host raced, so those two rank every candidate instead.
var pickIgnoresOthers = map[string]bool{
	api.StrategyLeastUsed: true,
	api.StrategyBinPack:   true,
	api.StrategyRandom:    true,
}

// candidateBuffer is the storage of one candidates call. Requests reuse
// it through candidateBuffers, which keeps ranking a large fleet from
// allocating a HostInfo per host.
type candidateBuffer struct {
	infos []host.HostInfo
	ptrs  []*host.HostInfo
}

var candidateBuffers = sync.Pool{
	New: func() any { return new(candidateBuffer) },
}

// pointers fills b.ptrs with pointers to b.infos and returns it. Call it
// after the last append to b.infos, which may move them.
func (b *candidateBuffer) pointers() []*host.HostInfo {
	b.ptrs = slices.Grow(b.ptrs[:0], len(b.infos))
	for i := range b.infos {
		b.ptrs = append(b.ptrs, &b.infos[i])
	}
	return b.ptrs
}

// release clears b, so the pool keeps no labels or names alive, and
// returns it to candidateBuffers.
func (b *candidateBuffer) release() {
	clear(b.infos)
	clear(b.ptrs)
	b.infos, b.ptrs = b.infos[:0], b.ptrs[:0]
	candidateBuffers.Put(b)
}

// freshNote explains why a host re-read from etcd cannot take r.
func freshNote(h *hostState, r request, f *Fleet) string {
	return fmt.Sprintf("host %q on a fresh read: %s", h.id,
		describeShortfall(r, f.judge(h, r)))
}

// Allocate places req on a host and records it in etcd. See the package
// documentation for the guarantees.
func (f *Fleet) Allocate(
	ctx context.Context, req api.AllocationRequest,
) (api.Allocation, bool, error) {
	start := time.Now()
	a, created, attempts, err := f.allocate(ctx, req)
	f.obs.AllocationFinished(outcome(created, err), attempts, time.Since(start))
	if created {
		f.counts.allocationsCreated.Add(1)
		f.log.Info("allocation created", "alloc_id", a.ID,
			"host_id", a.HostID, "cpu", a.CPU, "memory", a.Memory,
			"gpus", a.CUDAVisibleDevices, "owner", a.Owner,
			"attempts", attempts)
	}
	return a, created, err
}

// outcome names the result of Allocate for the Observer.
func outcome(created bool, err error) string {
	switch {
	case err == nil && created:
		return OutcomeCreated
	case err == nil:
		return OutcomeExisting
	case errors.Is(err, service.ErrInvalid):
		return OutcomeInvalid
	case errors.Is(err, service.ErrNoCapacity):
		return OutcomeNoCapacity
	case errors.Is(err, service.ErrConflict):
		return OutcomeConflict
	default:
		return OutcomeUnavailable
	}
}

func (f *Fleet) allocate(
	ctx context.Context, req api.AllocationRequest,
) (api.Allocation, bool, int, error) {
	r, err := f.parseRequest(req)
	if err != nil {
		return api.Allocation{}, false, 0, err
	}
	if err := f.checkReady(); err != nil {
		return api.Allocation{}, false, 0, err
	}

	if r.IdempotencyKey != "" {
		a, found, err := f.findIdempotent(ctx, r)
		if err != nil || found {
			return a, false, 0, err
		}
	}
	return f.place(ctx, r)
}

// place runs the filter, rank and commit loop. Each attempt commits on
// the best host not yet lost in a race during this call. A host that
// cannot take r on a fresh read is judged by that read from then on. A
// request with a TTL gets an etcd lease first, which is revoked again
// when no allocation was created. After a commit with an unknown outcome
// the lease is left to expire, which expires the allocation if it was
// committed after all.
func (f *Fleet) place(
	ctx context.Context, r request,
) (api.Allocation, bool, int, error) {
	p := placement{r: r}
	defer func() {
		if !p.created && !p.uncertain {
			f.revokeAllocationLease(ctx, "", p.lease)
		}
	}()

	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		hostID, err := f.chooseHost(r, p.fresh, p.raced)
		if err != nil {
			return api.Allocation{}, false, attempt - 1, err
		}
		if err := f.ensureLease(ctx, &p); err != nil {
			return api.Allocation{}, false, attempt - 1, err
		}

		res := f.commit(ctx, r, hostID, p.lease)
		switch {
		case res.err != nil:
			p.uncertain = res.uncertain
			return api.Allocation{}, false, attempt, res.err
		case res.done:
			p.created = res.created
			return res.alloc, res.created, attempt, nil
		case res.fresh != nil:
			if p.fresh == nil {
				p.fresh = make(map[string]*hostState)
			}
			p.fresh[hostID] = res.fresh
			continue
		case res.leaseGone:
			p.lease = 0
			continue
		}

		if p.raced == nil {
			p.raced = make(map[string]bool)
		}
		p.raced[hostID] = true
		p.conflicts++
		f.casConflict(OpAllocate)
		if err := pause(ctx, attempt); err != nil {
			return api.Allocation{}, false, attempt, f.unavailable(
				OpAllocate, "allocate", err)
		}
	}
	return api.Allocation{}, false, f.cfg.MaxAttempts,
		f.gaveUp(r, p.fresh, p.conflicts)
}

// placement is the state of one place call.
type placement struct {
	r request
	// fresh and raced are nil until the first host is re-read or lost in
	// a race. See chooseHost.
	fresh     map[string]*hostState
	raced     map[string]bool
	conflicts int
	// lease is the etcd lease for a request with a TTL, 0 until granted.
	lease   clientv3.LeaseID
	created bool
	// uncertain is set when a commit failed without a known outcome.
	uncertain bool
}

// ensureLease grants the placement's lease when its request has a TTL
// and it holds none.
func (f *Fleet) ensureLease(ctx context.Context, p *placement) error {
	if p.r.TTLSeconds == 0 || p.lease != 0 {
		return nil
	}
	id, err := f.grantAllocationLease(ctx, p.r.TTLSeconds)
	p.lease = id
	return err
}

// pause sleeps a random time that grows with the attempt, so racing
// coordinators spread out.
func pause(ctx context.Context, attempt int) error {
	d := mathrand.N(time.Duration(attempt) * conflictPause)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// gaveUp builds the error for an allocation that ran out of attempts.
func (f *Fleet) gaveUp(
	r request, fresh map[string]*hostState, conflicts int,
) error {
	if conflicts == 0 {
		if _, err := f.chooseHost(r, fresh, nil); err != nil {
			return err
		}
		return fmt.Errorf("%w: gave up after %d hosts that looked free "+
			"turned out full on a fresh read; retry",
			service.ErrNoCapacity, f.cfg.MaxAttempts)
	}
	return fmt.Errorf("%w: gave up after %d attempts, %d of them lost a "+
		"compare-and-swap race with other allocations on the same hosts; "+
		"retry", service.ErrUnavailable, f.cfg.MaxAttempts, conflicts)
}

// commitResult is the outcome of one commit attempt. With no error, done
// and fresh unset, the transaction lost its compare.
type commitResult struct {
	alloc   api.Allocation
	created bool
	done    bool
	// fresh is the host as re-read from etcd when it cannot take r.
	fresh *hostState
	// leaseGone reports that the allocation's lease expired before the
	// commit; a new one is needed.
	leaseGone bool
	// uncertain reports that the commit failed in etcd and may have been
	// applied anyway.
	uncertain bool
	err       error
}

// commit re-reads the host, checks r against what it read and writes the
// new ledger, the allocation record and the idempotency key in one
// transaction guarded by the read's revisions.
func (f *Fleet) commit(
	ctx context.Context, r request, hostID string, lease clientv3.LeaseID,
) commitResult {
	h, err := f.readHost(ctx, OpAllocate, hostID)
	if err != nil {
		return commitResult{err: err}
	}
	if f.judge(h, r).verdict != fits {
		return commitResult{fresh: h}
	}

	rec, err := f.newRecord(h, r, f.freeGPUs(h, r)[:r.GPU])
	if err != nil {
		return commitResult{err: err}
	}
	cmps, ops, orElse, err := f.allocationOps(h, rec, lease)
	if err != nil {
		return commitResult{err: err}
	}

	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(cmps...).Then(ops...).
		Else(orElse...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return commitResult{leaseGone: true}
	}
	if err != nil {
		return commitResult{uncertain: true, err: f.unavailable(OpAllocate,
			fmt.Sprintf("commit allocation on host %q", hostID), err)}
	}
	if resp.Succeeded {
		f.waitForRevision(ctx, resp.Header.Revision)
		return commitResult{alloc: toAPIAllocation(rec), created: true,
			done: true}
	}

	// The Else branch read the idempotency key: a concurrent request
	// with the same key won.
	if r.IdempotencyKey != "" {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			a, err := f.idempotentResult(ctx, r, string(kvs[0].Value))
			return commitResult{alloc: a, done: true, err: err}
		}
	}
	return commitResult{}
}

// allocationOps builds the compares, writes and, for a lost compare,
// reads of the transaction that commits rec on h. A record with a TTL
// gets its lease key, attached to lease, in the same transaction.
func (f *Fleet) allocationOps(
	h *hostState, rec *keyspace.Allocation, lease clientv3.LeaseID,
) (cmps []clientv3.Cmp, ops, orElse []clientv3.Op, err error) {
	ledger := cloneLedger(h.ledger)
	ledger.Allocations[rec.ID] = rec.LedgerEntry()
	ledgerValue, err := encodeLedger(h.id, ledger)
	if err != nil {
		return nil, nil, nil, err
	}
	recValue, err := keyspace.Encode(rec)
	if err != nil {
		return nil, nil, nil, err
	}

	recKey := f.ks.Allocation(rec.ID)
	cmps = []clientv3.Cmp{
		f.ledgerUnchanged(h),
		clientv3.Compare(clientv3.ModRevision(f.ks.HostInfo(h.id)), "=", h.infoRev),
		clientv3.Compare(clientv3.CreateRevision(f.ks.HostStatus(h.id)), ">", 0),
		clientv3.Compare(clientv3.CreateRevision(recKey), "=", 0),
	}
	ops = []clientv3.Op{
		clientv3.OpPut(f.ks.HostLedger(h.id), ledgerValue),
		clientv3.OpPut(recKey, recValue),
	}
	if rec.TTLSeconds > 0 {
		ops = append(ops, clientv3.OpPut(f.ks.AllocationLease(rec.ID),
			rec.ID, clientv3.WithLease(lease)))
	}
	if key := rec.IdempotencyKey; key != "" {
		idemKey := f.ks.Idempotency(key)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(idemKey), "=", 0))
		ops = append(ops, clientv3.OpPut(idemKey, rec.ID))
		orElse = append(orElse, clientv3.OpGet(idemKey))
	}
	return cmps, ops, orElse, nil
}

// newRecord builds the allocation record for r on h with the given GPUs.
func (f *Fleet) newRecord(
	h *hostState, r request, gpus []keyspace.GPUInfo,
) (*keyspace.Allocation, error) {
	id, err := newAllocationID()
	if err != nil {
		return nil, err
	}
	now := f.now().UTC()
	rec := &keyspace.Allocation{
		ID:             id,
		HostID:         h.id,
		HostName:       h.info.Name,
		HostAddress:    h.info.IPAddress,
		CPU:            r.CPU,
		Memory:         r.Memory,
		GPUs:           allocatedGPUs(gpus),
		Owner:          r.Owner,
		IdempotencyKey: r.IdempotencyKey,
		State:          keyspace.StateActive,
		CreatedAt:      now,
		TTLSeconds:     r.TTLSeconds,
	}
	if r.TTLSeconds > 0 {
		expires := now.Add(time.Duration(r.TTLSeconds) * time.Second)
		rec.ExpiresAt = &expires
	}
	return rec, nil
}

// newAllocationID returns "alloc-" and 16 random hex digits.
func newAllocationID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate allocation ID: %w", err)
	}
	return "alloc-" + hex.EncodeToString(b[:]), nil
}

func allocatedGPUs(gpus []keyspace.GPUInfo) []keyspace.AllocatedGPU {
	out := make([]keyspace.AllocatedGPU, len(gpus))
	for i, g := range gpus {
		out[i] = keyspace.AllocatedGPU{Index: g.Index, UUID: g.UUID}
	}
	return out
}

// findIdempotent returns the allocation already created for r's
// idempotency key, if there is one.
func (f *Fleet) findIdempotent(
	ctx context.Context, r request,
) (api.Allocation, bool, error) {
	key := f.ks.Idempotency(r.IdempotencyKey)
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Get(callCtx, key)
	if err != nil {
		return api.Allocation{}, false, f.unavailable(OpRead,
			fmt.Sprintf("read idempotency key %q", r.IdempotencyKey), err)
	}
	if len(resp.Kvs) == 0 {
		return api.Allocation{}, false, nil
	}
	a, err := f.idempotentResult(ctx, r, string(resp.Kvs[0].Value))
	return a, true, err
}

// idempotentResult returns the allocation an idempotency key points to,
// after checking that it was created for the same amounts, owner and TTL.
func (f *Fleet) idempotentResult(
	ctx context.Context, r request, allocID string,
) (api.Allocation, error) {
	rec, _, err := f.readAllocation(ctx, OpAllocate, allocID)
	if errors.Is(err, service.ErrNotFound) {
		return api.Allocation{}, fmt.Errorf("%w: idempotency key %q "+
			"points to allocation %q, which does not exist; use "+
			"another key", service.ErrConflict, r.IdempotencyKey, allocID)
	}
	if err != nil {
		return api.Allocation{}, err
	}

	if rec.CPU != r.CPU || rec.Memory != r.Memory || len(rec.GPUs) != r.GPU {
		return api.Allocation{}, fmt.Errorf("%w: idempotency key %q "+
			"belongs to allocation %q for %d CPU, %d bytes memory and "+
			"%d GPU, not this request; use a new key for a different "+
			"request", service.ErrConflict, r.IdempotencyKey, rec.ID,
			rec.CPU, rec.Memory, len(rec.GPUs))
	}
	if rec.Owner != r.Owner {
		return api.Allocation{}, fmt.Errorf("%w: idempotency key %q "+
			"belongs to allocation %q of owner %q, not %q; use a new key",
			service.ErrConflict, r.IdempotencyKey, rec.ID, rec.Owner, r.Owner)
	}
	// r.TTLSeconds has the default TTL applied, so a request without
	// ttl_seconds matches an allocation that got the default.
	if rec.TTLSeconds != r.TTLSeconds {
		return api.Allocation{}, fmt.Errorf("%w: idempotency key %q "+
			"belongs to allocation %q with ttl_seconds %s, not %s; use a "+
			"new key for a different request", service.ErrConflict,
			r.IdempotencyKey, rec.ID, describeTTL(rec.TTLSeconds),
			describeTTL(r.TTLSeconds))
	}
	return toAPIAllocation(rec), nil
}

// describeTTL formats ttl_seconds for a message, naming 0.
func describeTTL(seconds int64) string {
	if seconds == 0 {
		return "0 (no TTL)"
	}
	return fmt.Sprintf("%d", seconds)
}
