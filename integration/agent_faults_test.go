package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// startHosts starts one agent per ID, all on the cluster's endpoints.
func (e *env) startHosts(ids ...string) map[string]*harness.Process {
	e.t.Helper()
	agents := make(map[string]*harness.Process, len(ids))
	for _, id := range ids {
		agents[id] = e.startAgent(id, "")
	}
	return agents
}

// requireStaysHealthy polls c for d and fails as soon as one of ids is
// not healthy.
func (c *coordinator) requireStaysHealthy(t *testing.T, d time.Duration,
	ids ...string) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, id := range ids {
			require.Equal(t, api.HealthHealthy, c.health(id),
				"host %s must stay healthy", id)
		}
		time.Sleep(4 * pollInterval)
	}
}

// hostInfo reads a host's registration straight from etcd.
func (e *env) hostInfo(hostID string) *keyspace.HostInfo {
	e.t.Helper()
	key := e.ks.HostInfo(hostID)
	resp, err := e.cluster.Client().Get(harness.Ctx(e.t, 5*time.Second), key)
	require.NoError(e.t, err)
	require.Len(e.t, resp.Kvs, 1, "registration %s", key)
	info, err := keyspace.DecodeHostInfo(key, resp.Kvs[0].Value)
	require.NoError(e.t, err)
	return info
}

// statusLease returns the lease of a host's status key, or 0 when the key
// is absent.
func (e *env) statusLease(hostID string) clientv3.LeaseID {
	e.t.Helper()
	resp, err := e.cluster.Client().Get(harness.Ctx(e.t, 5*time.Second),
		e.ks.HostStatus(hostID))
	require.NoError(e.t, err)
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func TestAgentKillMarksHostUnhealthy(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "agent_kill")
	ids := []string{"host-a", "host-b", "host-c"}
	agents := e.startHosts(ids...)
	c := e.startCoordinator("a", "", "--lost-grace-period="+lostGrace.String())
	c.awaitAllHealthy(t, startTimeout, ids...)

	acks := harness.NewAckSet()
	held := mustAllocate(t, c, gpuRequest(2, "host-a"), "agent-kill-1")
	acks.Ack(held.ID)
	fig.Count(harness.FigureAcknowledged, acks.Len())

	killedAt := time.Now()
	agents["host-a"].Kill()
	harness.Await(t, 10*time.Second, pollInterval, func() bool {
		return c.health("host-a") == api.HealthUnhealthy
	}, "killed agent's host unhealthy")
	detection := fig.Since(harness.FigureDetectionTime, killedAt)
	require.LessOrEqual(t, detection, agentTTL+detectionSlack,
		"detection must take at most the TTL plus %s", detectionSlack)

	// The coordinator names the cause and places nothing on the host.
	h, err := c.api.HostHealth(ctxFor(t), "host-a")
	require.NoError(t, err)
	require.Contains(t, h.Message, "lease expired")
	_, _, err = c.api.Allocate(ctxFor(t),
		gpuRequest(1, "host-a"))
	require.ErrorIs(t, err, client.ErrNoCapacity)

	c.requireStaysHealthy(t, 2*time.Second, "host-b", "host-c")

	// The allocation made before the kill turns lost after the grace
	// period and keeps its GPUs.
	c.awaitAllocState(t, held.ID, keyspace.StateLost, 10*time.Second)
	fig.Since("lost_after", killedAt)
	host, err := c.api.GetHost(ctxFor(t), "host-a")
	require.NoError(t, err)
	require.Equal(t, 2, host.UsedGPU)
	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks, acks))
}

func TestAgentPauseRecoversWithoutRestart(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "agent_pause")
	ids := []string{"host-a", "host-b"}
	agents := e.startHosts(ids...)
	c := e.startCoordinator("a", "", "--lost-grace-period="+lostGrace.String())
	c.awaitAllHealthy(t, startTimeout, ids...)

	acks := harness.NewAckSet()
	held := mustAllocate(t, c, gpuRequest(3, "host-a"), "agent-pause-1")
	acks.Ack(held.ID)
	fig.Count(harness.FigureAcknowledged, acks.Len())
	agent := agents["host-a"]
	pid := agent.PID()
	instance := e.hostInfo("host-a").InstanceID
	lease := e.statusLease("host-a")
	require.NotZero(t, lease)

	pausedAt := time.Now()
	agent.Pause()
	harness.Await(t, 10*time.Second, pollInterval, func() bool {
		return c.health("host-a") == api.HealthUnhealthy
	}, "paused agent's host unhealthy")
	detection := fig.Since(harness.FigureDetectionTime, pausedAt)
	require.LessOrEqual(t, detection, agentTTL+detectionSlack)
	require.Equal(t, api.HealthHealthy, c.health("host-b"))

	// The allocation turns lost while the host is down. The agent stays
	// stopped for at least twice the TTL, so its lease is surely gone.
	c.awaitAllocState(t, held.ID, keyspace.StateLost, 10*time.Second)
	fig.Since("lost_after", pausedAt)
	time.Sleep(time.Until(pausedAt.Add(2 * agentTTL)))
	fig.Since("paused", pausedAt)

	resumedAt := time.Now()
	agent.Resume()
	c.awaitHealth(t, "host-a", api.HealthHealthy, 15*time.Second)
	fig.Since(harness.FigureRecoveryTime, resumedAt)

	// The same process registered again under a new lease.
	require.True(t, agent.Running())
	require.Equal(t, pid, agent.PID())
	require.Equal(t, instance, e.hostInfo("host-a").InstanceID)
	newLease := e.statusLease("host-a")
	require.NotZero(t, newLease)
	require.NotEqual(t, lease, newLease, "the old lease expired")

	// The allocation made before the pause is active again and intact.
	c.awaitAllocState(t, held.ID, keyspace.StateActive, 10*time.Second)
	fig.Since("active_again_after", resumedAt)
	got, err := c.api.GetAllocation(ctxFor(t), held.ID)
	require.NoError(t, err)
	require.Equal(t, "host-a", got.HostID)
	require.Len(t, got.GPUs, 3)
	host, err := c.api.GetHost(ctxFor(t), "host-a")
	require.NoError(t, err)
	require.Equal(t, 3, host.UsedGPU)
	require.Equal(t, api.HealthHealthy, host.Health)
	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks, acks))

	// The host takes new work again.
	more := mustAllocate(t, c, gpuRequest(1, "host-a"), "agent-pause-2")
	acks.Ack(more.ID)
	fig.Count(harness.FigureAcknowledged, acks.Len())
}

// awaitAllocState polls c until allocation id is in state want.
func (c *coordinator) awaitAllocState(t *testing.T, id, want string,
	timeout time.Duration) {
	t.Helper()
	harness.Await(t, timeout, pollInterval, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		a, err := c.api.GetAllocation(ctx, id)
		return err == nil && a.State == want
	}, "allocation "+id+" "+want)
}

// ctxFor is a short-hand for a context bounded by apiTimeout.
func ctxFor(t *testing.T) context.Context { return harness.Ctx(t, apiTimeout) }
