package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

// healthWatch polls a coordinator for the health of some hosts and keeps
// every response other than healthy, so a scenario can tell whether a fault
// made a live host look dead.
type healthWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the field below.
	mu   sync.Mutex
	seen map[string][]string // host ID to the non-healthy responses
}

// watchHealth starts polling c every 100 ms until stop.
func watchHealth(t *testing.T, c *coordinator, ids ...string) *healthWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &healthWatch{cancel: cancel, seen: make(map[string][]string)}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			for _, id := range ids {
				if h := c.health(id); h != api.HealthHealthy &&
					ctx.Err() == nil {
					w.add(id, h)
				}
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *healthWatch) add(id, health string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[id] = append(w.seen[id], health)
}

// stop ends the polling and returns the non-healthy responses by host. A
// second call returns the same.
func (w *healthWatch) stop() map[string][]string {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// count returns the number of non-healthy responses of the given kind (any
// kind when health is empty) over every host.
func countHealth(seen map[string][]string, health string) int {
	n := 0
	for _, answers := range seen {
		for _, h := range answers {
			if health == "" || h == health {
				n++
			}
		}
	}
	return n
}

func TestEtcdLeaderKillUnderLoad(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "etcd_leader_kill")
	ids := []string{"host-a", "host-b", "host-c"}
	e.startHosts(ids...)
	a := e.startCoordinator("a", "")
	b := e.startCoordinator("b", "")
	a.awaitAllHealthy(t, startTimeout, ids...)
	b.awaitAllHealthy(t, startTimeout, ids...)
	watch := watchHealth(t, a, ids...)

	l := startLoad(t, "leader-kill", []*client.Client{a.api, b.api}, 3)
	harness.Await(t, 15*time.Second, pollInterval, func() bool {
		return l.acks.Len() >= 10
	}, "load acknowledged 10 allocations before the fault")

	leader, err := e.cluster.Leader()
	require.NoError(t, err)
	killedAt := time.Now()
	e.cluster.Kill(leader)
	newLeader := e.cluster.WaitLeader(15 * time.Second)
	fig.Since("election_time", killedAt)
	electedAt := time.Now()
	require.NotEqual(t, leader, newLeader)

	// Allocations succeed again within a few seconds of the election.
	var recovered time.Time
	harness.Await(t, 15*time.Second, pollInterval, func() bool {
		var ok bool
		recovered, ok = l.firstSuccessAfter(killedAt)
		return ok
	}, "an allocation started after the kill acknowledged")
	fig.Duration(harness.FigureRecoveryTime, recovered.Sub(killedAt))
	require.Less(t, recovered.Sub(electedAt), 5*time.Second,
		"first allocation after the new leader")

	// Both coordinators serve again, then the load ends.
	harness.Await(t, 15*time.Second, pollInterval, func() bool {
		return l.successesAfter(recovered, 0) > 0 &&
			l.successesAfter(recovered, 1) > 0
	}, "both coordinators acknowledge allocations after the election")
	time.Sleep(time.Second)
	l.settle(a.api, b.api)
	l.report(fig)

	// A new leader extends every lease by its TTL plus an election
	// timeout, so no live host may look dead because of the election.
	seen := watch.stop()
	fig.Count("unhealthy_answers", countHealth(seen, ""))
	require.Empty(t, seen, "hosts must stay healthy through the election")

	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks,
		l.acks))
}

// outageLength is how long the whole etcd cluster stays down.
const outageLength = 30 * time.Second

func TestEtcdClusterOutageRecovers(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "etcd_outage")
	ids := []string{"host-a", "host-b", "host-c"}
	e.startHosts(ids...)
	a := e.startCoordinator("a", "")
	b := e.startCoordinator("b", "")
	a.awaitAllHealthy(t, startTimeout, ids...)
	b.awaitAllHealthy(t, startTimeout, ids...)

	acks := harness.NewAckSet()
	for i, id := range ids {
		acks.Ack(mustAllocate(t, a, gpuRequest(i+1, id),
			"outage-before-"+id).ID)
	}

	// A member that got SIGTERM keeps serving its open streams while it
	// shuts down gracefully, so the outage counts from the last exit.
	stopping := time.Now()
	e.cluster.StopAll()
	fig.Since("stop_time", stopping)
	stoppedAt := time.Now()

	// While etcd is down an allocation fails with 503, not 500, and
	// commits nothing; the last known view stays readable.
	_, _, err := a.api.Allocate(harness.Ctx(t, 2*apiTimeout),
		api.AllocationRequest{GPU: 1, IdempotencyKey: "outage-during"})
	require.Error(t, err)
	requireNo5xx(t, err)
	t.Logf("allocation during the outage: %v", err)
	hosts, err := a.api.ListHosts(ctxFor(t))
	require.NoError(t, err, "GET /v1/hosts during the outage")
	require.Len(t, hosts, len(ids))
	ready := a.api.Ready(ctxFor(t))
	t.Logf("readiness during the outage: %v", ready)
	requireNo5xx(t, ready)

	time.Sleep(time.Until(stoppedAt.Add(outageLength)))
	fig.Since("outage", stoppedAt)
	startedAt := time.Now()
	e.cluster.StartAll()
	fig.Since("etcd_start_time", startedAt)

	// Agents and coordinators reconnect by themselves.
	a.awaitAllHealthy(t, 30*time.Second, ids...)
	b.awaitAllHealthy(t, 30*time.Second, ids...)
	fig.Since("hosts_healthy_after_start", startedAt)
	var first time.Time
	for i, c := range []*coordinator{a, b} {
		alloc := mustAllocate(t, c, gpuRequest(1, ""),
			"outage-after-"+string(rune('a'+i)))
		acks.Ack(alloc.ID)
		if first.IsZero() {
			first = time.Now()
		}
	}
	fig.Duration(harness.FigureRecoveryTime, first.Sub(startedAt))
	fig.Count(harness.FigureAcknowledged, acks.Len())

	// The coordinators' views match etcd again.
	e.requireViewMatchesEtcd(a, 10*time.Second)
	e.requireViewMatchesEtcd(b, 10*time.Second)
	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks, acks))
}

func TestAgentCutOffFromEtcd(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "agent_partition")
	proxies := harness.StartProxies(t, e.cluster.Endpoints())
	agent := e.startAgent("host-c", strings.Join(proxies.URLs(), ","))
	e.startHosts("host-a", "host-b")
	ids := []string{"host-a", "host-b", "host-c"}
	c := e.startCoordinator("a", "")
	c.awaitAllHealthy(t, startTimeout, ids...)

	acks := harness.NewAckSet()
	acks.Ack(mustAllocate(t, c, gpuRequest(2, "host-c"), "cut-1").ID)
	watch := watchHealth(t, c, "host-a", "host-b")

	cutAt := time.Now()
	proxies.Cut()
	harness.Await(t, 10*time.Second, pollInterval, func() bool {
		return c.health("host-c") == api.HealthUnhealthy
	}, "cut-off agent's host unhealthy")
	detection := fig.Since(harness.FigureDetectionTime, cutAt)
	require.LessOrEqual(t, detection, agentTTL+detectionSlack)

	// The agent keeps running and retrying while it is cut off.
	time.Sleep(agentTTL)
	require.True(t, agent.Running(), "agent must not exit while cut off")

	restoredAt := time.Now()
	proxies.Restore()
	c.awaitHealth(t, "host-c", api.HealthHealthy, 20*time.Second)
	fig.Since(harness.FigureRecoveryTime, restoredAt)
	fig.Since("cut_off", cutAt)

	seen := watch.stop()
	fig.Count("unhealthy_answers_others", countHealth(seen, ""))
	require.Empty(t, seen, "hosts outside the partition stay healthy")
	acks.Ack(mustAllocate(t, c, gpuRequest(1, "host-c"), "cut-2").ID)
	fig.Count(harness.FigureAcknowledged, acks.Len())
	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks, acks))
}
