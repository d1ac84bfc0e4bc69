package fleet

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// etcdError counts a failed etcd call.
func (f *Fleet) etcdError(op string) {
	f.counts.etcdErrors.Add(1)
	f.obs.EtcdError(op)
}

// unavailable counts a failed etcd call and wraps its error with
// ErrUnavailable and what was being done.
func (f *Fleet) unavailable(op, doing string, err error) error {
	f.etcdError(op)
	return fmt.Errorf("%s: %w: etcd: %w", doing, service.ErrUnavailable, err)
}

// callContext bounds one etcd call.
func (f *Fleet) callContext(
	ctx context.Context,
) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.cfg.CallTimeout)
}

// readHost reads a host's info, status and ledger in one linearizable
// transaction and returns them with the read's revision. Invalid
// documents are kept as errors in the returned state, not returned. A
// key still at the revision the view holds takes the view's decoded
// document instead of being decoded again: a key has one value per
// revision, and decoded documents are never changed in place.
func (f *Fleet) readHost(
	ctx context.Context, op, hostID string,
) (*hostState, error) {
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).Then(
		clientv3.OpGet(f.ks.HostInfo(hostID)),
		clientv3.OpGet(f.ks.HostStatus(hostID)),
		clientv3.OpGet(f.ks.HostLedger(hostID)),
	).Commit()
	if err != nil {
		return nil, f.unavailable(op, fmt.Sprintf("read host %q", hostID), err)
	}

	h := newHostState(hostID)
	known := f.viewDocuments(hostID)
	now := f.now()
	for i, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			key := string(kv.Key)
			switch i {
			case 0:
				if kv.ModRevision == known.infoRev {
					h.info, h.infoRev = known.info, known.infoRev
					continue
				}
				_ = h.putInfo(key, kv)
			case 1:
				if kv.ModRevision == known.statusRev {
					h.setStatus(known.statusRev, known.status,
						known.statusErr, now)
					continue
				}
				_ = h.putStatus(key, kv, now)
			case 2:
				if kv.ModRevision == known.ledgerRev {
					h.ledger, h.ledgerRev, h.ledgerErr =
						known.ledger, known.ledgerRev, known.ledgerErr
					continue
				}
				_ = h.putLedger(key, kv)
			}
		}
	}
	return h, nil
}

// hostDocuments is a host's decoded keys with their revisions, each
// revision 0 when the key is absent.
type hostDocuments struct {
	info      *keyspace.HostInfo
	infoRev   int64
	status    *keyspace.HostStatus
	statusRev int64
	statusErr error
	ledger    *keyspace.Ledger
	ledgerRev int64
	ledgerErr error
}

// viewDocuments returns the view's decoded keys of hostID.
func (f *Fleet) viewDocuments(hostID string) hostDocuments {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h, ok := f.view.hosts[hostID]
	if !ok {
		return hostDocuments{}
	}
	return hostDocuments{
		info: h.info, infoRev: h.infoRev,
		status: h.status, statusRev: h.statusRev, statusErr: h.statusErr,
		ledger: h.ledger, ledgerRev: h.ledgerRev, ledgerErr: h.ledgerErr,
	}
}

// infoError explains why a host read by readHost has no usable info.
func (f *Fleet) infoError(h *hostState) error {
	if h.infoRev == 0 {
		return fmt.Errorf("%w: host %q is not registered",
			service.ErrNotFound, h.id)
	}
	return fmt.Errorf("%w: host %q: info key %q contains an invalid "+
		"document; restart its agent to register it again, or remove "+
		"the host", service.ErrConflict, h.id, f.ks.HostInfo(h.id))
}

// ledgerError explains a ledger that does not decode.
func (f *Fleet) ledgerError(h *hostState) error {
	return fmt.Errorf("%w: host %q: %v; repair or delete the key with "+
		"etcdctl once no allocation is running there",
		service.ErrConflict, h.id, h.ledgerErr)
}

// ledgerUnchanged compares the ledger's ModRevision with the one read;
// an absent ledger must still be absent.
func (f *Fleet) ledgerUnchanged(h *hostState) clientv3.Cmp {
	key := f.ks.HostLedger(h.id)
	if h.ledgerRev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", h.ledgerRev)
}

// encodeLedger encodes a ledger after checking it, so a bug can never
// store one that holds a GPU twice or too many entries.
func encodeLedger(hostID string, l *keyspace.Ledger) (string, error) {
	if err := l.Validate(); err != nil {
		return "", fmt.Errorf("new ledger of host %q: %w", hostID, err)
	}
	return keyspace.Encode(l)
}

// cloneLedger returns a copy of l whose map can be changed freely.
func cloneLedger(l *keyspace.Ledger) *keyspace.Ledger {
	c := *l
	c.Allocations = make(map[string]keyspace.LedgerEntry, len(l.Allocations)+1)
	for id, e := range l.Allocations {
		c.Allocations[id] = e
	}
	return &c
}
