package fleet

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// ListHosts returns every registered host, sorted by ID.
func (f *Fleet) ListHosts(context.Context) ([]api.Host, error) {
	if err := f.checkReady(); err != nil {
		return nil, err
	}

	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]api.Host, 0, len(f.view.hosts))
	for _, h := range f.view.hosts {
		if h.info != nil {
			out = append(out, f.apiHostLocked(h))
		}
	}
	slices.SortFunc(out, func(a, b api.Host) int {
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// GetHost returns one registered host.
func (f *Fleet) GetHost(_ context.Context, hostID string) (api.Host, error) {
	if err := checkID("host", hostID); err != nil {
		return api.Host{}, err
	}
	if err := f.checkReady(); err != nil {
		return api.Host{}, err
	}

	f.mu.RLock()
	defer f.mu.RUnlock()
	h, ok := f.view.hosts[hostID]
	if !ok || h.info == nil {
		return api.Host{}, hostNotFound(hostID)
	}
	return f.apiHostLocked(h), nil
}

func hostNotFound(hostID string) error {
	return fmt.Errorf("%w: host %q is not registered", service.ErrNotFound,
		hostID)
}

// HostHealth returns the health of one registered host, as of now.
func (f *Fleet) HostHealth(ctx context.Context, hostID string) (api.HostHealth, error) {
	h, err := f.GetHost(ctx, hostID)
	if err != nil {
		return api.HostHealth{}, err
	}
	return api.HostHealth{
		HostID:        h.ID,
		Health:        h.Health,
		Message:       h.HealthMessage,
		LastHeartbeat: h.LastHeartbeat,
		CheckedAt:     f.now().UTC(),
	}, nil
}

// apiHostLocked converts a registered host to its API form. The caller
// holds f.mu.
func (f *Fleet) apiHostLocked(h *hostState) api.Host {
	cpu, memory, gpus := h.ledger.Totals()
	status := host.StatusActive
	if h.ledger.Draining {
		status = host.StatusDraining
	}

	out := api.Host{
		ID:            h.id,
		Name:          h.info.Name,
		IPAddress:     h.info.IPAddress,
		Status:        status,
		TotalCPU:      h.info.TotalCPU,
		UsedCPU:       cpu,
		TotalMemory:   h.info.TotalMemory,
		UsedMemory:    memory,
		TotalGPU:      len(h.info.GPUs),
		UsedGPU:       gpus,
		Labels:        maps.Clone(h.info.Labels),
		Health:        h.health.status,
		HealthMessage: f.healthMessage(h),
		AgentVersion:  h.info.AgentVersion,
		GPUs:          f.apiGPUs(h),
	}
	if !h.lastSeenAt.IsZero() {
		seen := h.lastSeenAt.UTC()
		out.LastHeartbeat = &seen
	}
	if h.status != nil {
		out.CPUPercent = h.status.CPUPercent
		out.MemoryInUse = h.status.UsedMemory
	}
	return out
}

// healthMessage adds the ledger's problems to the health message; they do
// not change the health, but they keep the host from new allocations.
func (f *Fleet) healthMessage(h *hostState) string {
	notes := []string{}
	if h.health.message != "" {
		notes = append(notes, h.health.message)
	}
	if h.ledgerErr != nil {
		notes = append(notes, fmt.Sprintf("takes no allocations: %v",
			h.ledgerErr))
	}
	cpu, memory, gpus := h.ledger.Totals()
	if cpu > h.info.TotalCPU || memory > h.info.TotalMemory ||
		gpus > len(h.info.GPUs) {
		notes = append(notes, fmt.Sprintf("allocations hold %d CPU, %s "+
			"memory and %d GPU, more than the registered totals",
			cpu, formatBytes(memory), gpus))
	}
	return strings.Join(notes, "; ")
}

// apiGPUs lists the host's GPUs by index with their live state.
func (f *Fleet) apiGPUs(h *hostState) []api.GPU {
	inUse := h.ledger.GPUsInUse()
	out := make([]api.GPU, 0, len(h.info.GPUs))
	for i, g := range sortedGPUs(h.info) {
		ag := api.GPU{
			Index:        g.Index,
			UUID:         g.UUID,
			Name:         g.Name,
			MemoryTotal:  g.MemoryTotal,
			AllocationID: inUse[g.UUID],
			Health:       api.HealthUnknown,
		}
		if st := liveGPU(h, i, g.UUID); st != nil {
			ag.Health = st.Health
			ag.HealthReason = st.HealthReason
			ag.MemoryUsed = st.MemoryUsed
			ag.UtilizationGPUPercent = st.UtilizationGPUPercent
			ag.Busy = ag.AllocationID == "" && f.busy(st)
		}
		out = append(out, ag)
	}
	return out
}

// Drain stops new allocations on a host; its allocations stay.
func (f *Fleet) Drain(ctx context.Context, hostID string) (api.Host, error) {
	return f.setDraining(ctx, hostID, true)
}

// Undrain lets a drained host take new allocations again.
func (f *Fleet) Undrain(ctx context.Context, hostID string) (api.Host, error) {
	return f.setDraining(ctx, hostID, false)
}

// setDraining sets the ledger's Draining flag with a compare-and-swap, so
// it cannot overwrite a concurrent allocation.
func (f *Fleet) setDraining(
	ctx context.Context, hostID string, drain bool,
) (api.Host, error) {
	if err := checkID("host", hostID); err != nil {
		return api.Host{}, err
	}

	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		rev, done, err := f.setDrainingOnce(ctx, hostID, drain)
		if err != nil {
			return api.Host{}, err
		}
		if done {
			f.waitForRevision(ctx, rev)
			return f.GetHost(ctx, hostID)
		}
		f.casConflict(OpDrain)
		if err := pause(ctx, attempt); err != nil {
			return api.Host{}, f.unavailable(OpDrain,
				fmt.Sprintf("drain host %q", hostID), err)
		}
	}
	return api.Host{}, fmt.Errorf("%w: change draining of host %q: gave up "+
		"after %d attempts lost a compare-and-swap race; retry",
		service.ErrUnavailable, hostID, f.cfg.MaxAttempts)
}

// setDrainingOnce makes one attempt. It returns the revision to wait for
// and false when the compare failed.
func (f *Fleet) setDrainingOnce(
	ctx context.Context, hostID string, drain bool,
) (int64, bool, error) {
	h, err := f.readHost(ctx, OpDrain, hostID)
	if err != nil {
		return 0, false, err
	}
	switch {
	case h.info == nil:
		return 0, false, f.infoError(h)
	case h.ledgerErr != nil:
		return 0, false, f.ledgerError(h)
	case h.ledger.Draining == drain:
		return h.ledgerRev, true, nil
	}

	ledger := cloneLedger(h.ledger)
	ledger.Draining, ledger.DrainedAt = drain, nil
	if drain {
		now := f.now().UTC()
		ledger.DrainedAt = &now
	}
	value, err := encodeLedger(hostID, ledger)
	if err != nil {
		return 0, false, err
	}

	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(f.ledgerUnchanged(h)).
		Then(clientv3.OpPut(f.ks.HostLedger(hostID), value)).Commit()
	if err != nil {
		return 0, false, f.unavailable(OpDrain, fmt.Sprintf("write "+
			"ledger of host %q", hostID), err)
	}
	if !resp.Succeeded {
		return 0, false, nil
	}
	return resp.Header.Revision, true, nil
}

// RemoveHost deletes the info and ledger of a host that is not alive and
// holds no allocations, in one transaction that checks both conditions.
func (f *Fleet) RemoveHost(ctx context.Context, hostID string) error {
	if err := checkID("host", hostID); err != nil {
		return err
	}

	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		done, err := f.removeHostOnce(ctx, hostID)
		if err != nil || done {
			return err
		}
		f.casConflict(OpRemove)
		if err := pause(ctx, attempt); err != nil {
			return f.unavailable(OpRemove,
				fmt.Sprintf("remove host %q", hostID), err)
		}
	}
	return fmt.Errorf("%w: remove host %q: it changed during each of %d "+
		"attempts; check its state and retry", service.ErrConflict, hostID,
		f.cfg.MaxAttempts)
}

func (f *Fleet) removeHostOnce(ctx context.Context, hostID string) (bool, error) {
	h, err := f.readHost(ctx, OpRemove, hostID)
	if err != nil {
		return false, err
	}
	if err := f.checkRemovable(h); err != nil {
		return false, err
	}

	status := f.ks.HostStatus(hostID)
	callCtx, cancel := f.callContext(ctx)
	defer cancel()
	resp, err := f.client.Txn(callCtx).If(
		clientv3.Compare(clientv3.CreateRevision(status), "=", 0),
		clientv3.Compare(clientv3.ModRevision(f.ks.HostInfo(hostID)), "=", h.infoRev),
		f.ledgerUnchanged(h),
	).Then(
		clientv3.OpDelete(f.ks.HostInfo(hostID)),
		clientv3.OpDelete(f.ks.HostLedger(hostID)),
	).Commit()
	if err != nil {
		return false, f.unavailable(OpRemove, fmt.Sprintf("remove host %q",
			hostID), err)
	}
	if !resp.Succeeded {
		return false, nil
	}

	f.waitForRevision(ctx, resp.Header.Revision)
	f.log.Info("host removed", "host_id", hostID,
		"revision", resp.Header.Revision)
	return true, nil
}

// checkRemovable explains why a host read from etcd cannot be removed.
func (f *Fleet) checkRemovable(h *hostState) error {
	switch {
	case h.infoRev == 0 && h.ledgerRev == 0 && h.statusRev == 0:
		return hostNotFound(h.id)
	case h.statusRev > 0:
		return fmt.Errorf("%w: host %q is alive: its agent's status key "+
			"%q exists; stop the agent, or wait for its lease to expire, "+
			"then remove the host", service.ErrConflict, h.id,
			f.ks.HostStatus(h.id))
	case h.ledgerErr != nil:
		return f.ledgerError(h)
	case len(h.ledger.Allocations) > 0:
		return fmt.Errorf("%w: host %q has %d allocations (%s); release "+
			"them first", service.ErrConflict, h.id,
			len(h.ledger.Allocations), allocationList(h.ledger))
	}
	return nil
}

// allocationList names up to five of a ledger's allocations.
func allocationList(l *keyspace.Ledger) string {
	ids := slices.Sorted(maps.Keys(l.Allocations))
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + ", ..."
	}
	return strings.Join(ids, ", ")
}
