package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// healthState is a host's health as an api.Health* value and a message.
type healthState struct {
	status  string
	message string
}

// computeHealth derives the host's health from its keys and from what
// this coordinator observed. It never looks at how full the host is.
func (h *hostState) computeHealth() healthState {
	switch {
	case h.statusRev > 0 && h.statusErr != nil:
		return healthState{api.HealthUnhealthy, fmt.Sprintf(
			"status key holds an invalid document: %v", h.statusErr)}
	case h.statusRev > 0:
		return healthState{api.HealthHealthy, gpuHealthSummary(h)}
	case h.info != nil && h.info.StoppedAt != nil:
		return healthState{api.HealthStopped, fmt.Sprintf(
			"agent stopped at %s", formatTime(*h.info.StoppedAt))}
	case h.statusSeen:
		return healthState{api.HealthUnhealthy, expiredMessage(h)}
	default:
		return healthState{api.HealthUnknown, "no status key seen " +
			"since this coordinator started; the agent is not " +
			"heartbeating"}
	}
}

// expiredMessage explains a host whose status key vanished without a
// deliberate stop.
func expiredMessage(h *hostState) string {
	var b strings.Builder
	b.WriteString("heartbeat lease expired")
	if !h.lostAt.IsZero() {
		fmt.Fprintf(&b, " at %s", formatTime(h.lostAt))
	}
	if !h.lastSeenAt.IsZero() {
		fmt.Fprintf(&b, "; last heartbeat seen at %s",
			formatTime(h.lastSeenAt))
	}
	if !h.agentHeartbeatAt.IsZero() {
		fmt.Fprintf(&b, " (agent clock: %s)",
			formatTime(h.agentHeartbeatAt))
	}
	return b.String()
}

// gpuHealthSummary lists the GPUs a healthy host reports unhealthy.
func gpuHealthSummary(h *hostState) string {
	if h.status == nil {
		return ""
	}
	var bad []string
	for _, g := range h.status.GPUs {
		if g.Health == keyspace.GPUHealthy {
			continue
		}
		reason := g.HealthReason
		if reason == "" {
			reason = "no reason given"
		}
		bad = append(bad, fmt.Sprintf("GPU %d %s (%s)",
			g.Index, g.UUID, reason))
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d GPUs unhealthy: %s", len(bad),
		len(h.status.GPUs), strings.Join(bad, ", "))
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

// syncHostsLocked recomputes health for the given hosts, logs and reports
// each transition and mirrors the hosts into the HostManager. The caller
// holds f.mu for writing.
func (f *Fleet) syncHostsLocked(ids map[string]struct{}) {
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	slices.Sort(sorted)

	for _, id := range sorted {
		h, ok := f.view.hosts[id]
		if !ok {
			continue
		}
		f.syncHostLocked(h)
	}
}

// syncHostLocked handles one host after its keys changed.
func (f *Fleet) syncHostLocked(h *hostState) {
	log := f.log.With("host_id", h.id, "revision", f.view.rev)
	registered := h.health.status != ""

	if h.info == nil {
		if registered {
			log.Warn("host removed from the view", "reason",
				removalReason(h))
			h.health = healthState{}
			_ = f.manager.UnregisterHost(h.id)
		}
		f.reportOrphanStatusLocked(h)
		if h.empty() {
			delete(f.view.hosts, h.id)
		}
		return
	}

	next := h.computeHealth()
	if next != h.health {
		f.logHealthChange(log, h.health, next)
		if registered {
			f.counts.healthChanges.Add(1)
		}
		f.obs.HostHealthChanged(h.id, h.health.status, next.status)
		f.wakeSweep()
	}
	h.health = next
	switch {
	case h.statusRev > 0:
		h.downSince = time.Time{}
	case h.downSince.IsZero():
		h.downSince = f.now()
	}

	if registered && h.ledger.Draining != h.draining {
		log.Info("host draining changed", "draining", h.ledger.Draining)
	}
	h.draining = h.ledger.Draining
	f.mirrorLocked(h, log)
}

// removalReason explains why a host with keys left in etcd has no info.
func removalReason(h *hostState) string {
	if h.infoRev > 0 {
		return "its info key holds an invalid document"
	}
	return "its info key was deleted"
}

func (f *Fleet) logHealthChange(log *slog.Logger, prev, next healthState) {
	attrs := []any{"health", next.status, "message", next.message}
	switch {
	case prev.status == "":
		log.Info("host registered", attrs...)
	case next.status == api.HealthHealthy:
		log.Info("host health changed", append(attrs,
			"previous", prev.status)...)
	default:
		log.Warn("host health changed", append(attrs,
			"previous", prev.status)...)
	}
}

// reportOrphanStatusLocked logs, once per revision, a status key whose
// host has no valid info key.
func (f *Fleet) reportOrphanStatusLocked(h *hostState) {
	if h.statusRev == 0 || h.infoRev > 0 {
		return
	}
	key := f.ks.HostStatus(h.id)
	f.reportInvalidLocked(key, h.statusRev, fmt.Errorf(
		"status key %q has no info key %q; the host is ignored until "+
			"its agent registers", key, f.ks.HostInfo(h.id)))
}

// mirrorLocked stores the host and its health in the HostManager.
func (f *Fleet) mirrorLocked(h *hostState, log *slog.Logger) {
	if err := f.manager.UpsertHost(managerHost(h)); err != nil {
		log.Error("mirror host into the host manager", "err", err)
		return
	}
	err := f.manager.SetHealth(managerHealth(h, f.now()))
	if err != nil {
		log.Error("record host health in the host manager", "err", err)
	}
}

// managerHost converts a host to pkg/host form. Used amounts are capped
// at the totals, because a HostManager rejects more; the API shows the
// ledger's real amounts.
func managerHost(h *hostState) *host.HostInfo {
	cpu, memory, gpus := h.ledger.Totals()
	status := host.StatusActive
	if h.ledger.Draining {
		status = host.StatusDraining
	}
	return &host.HostInfo{
		ID:          h.id,
		Name:        h.info.Name,
		IPAddress:   h.info.IPAddress,
		Status:      status,
		TotalCPU:    h.info.TotalCPU,
		UsedCPU:     min(cpu, h.info.TotalCPU),
		TotalMemory: h.info.TotalMemory,
		UsedMemory:  min(memory, h.info.TotalMemory),
		TotalGPU:    len(h.info.GPUs),
		UsedGPU:     min(gpus, len(h.info.GPUs)),
		Labels:      h.info.Labels,
	}
}

// managerHealth converts the host's health to a pkg/host result. A
// stopped host is unhealthy there, since pkg/host has no stopped state.
func managerHealth(h *hostState, now time.Time) host.HealthCheckResult {
	status := host.HealthUnknown
	switch h.health.status {
	case api.HealthHealthy:
		status = host.HealthHealthy
	case api.HealthUnhealthy, api.HealthStopped:
		status = host.HealthUnhealthy
	}
	msg := h.health.message
	if h.health.status == api.HealthStopped {
		msg = "stopped: " + msg
	}
	return host.HealthCheckResult{
		HostID: h.id, Status: status, Message: msg, CheckedAt: now,
	}
}

// healthChecker serves the HostManager's on-demand checks from the view
// instead of judging a host by how full it is.
type healthChecker struct{ f *Fleet }

var _ host.HealthChecker = healthChecker{}

// Check returns the health the view holds for the host.
func (c healthChecker) Check(
	_ context.Context, hi *host.HostInfo,
) host.HealthCheckResult {
	now := c.f.now()
	if hi == nil {
		return host.HealthCheckResult{Status: host.HealthUnknown,
			Message: "no host to check", CheckedAt: now}
	}

	c.f.mu.RLock()
	defer c.f.mu.RUnlock()
	h, ok := c.f.view.hosts[hi.ID]
	if !ok || h.info == nil {
		return host.HealthCheckResult{HostID: hi.ID,
			Status: host.HealthUnknown, CheckedAt: now,
			Message: "host is not in the coordinator's view"}
	}
	return managerHealth(h, now)
}
