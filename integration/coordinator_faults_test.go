package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

func TestCoordinatorKillMidAllocation(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "coordinator_kill")
	ids := []string{"host-a", "host-b", "host-c"}
	e.startHosts(ids...)
	a := e.startCoordinator("a", "")
	b := e.startCoordinator("b", "")
	b.awaitAllHealthy(t, startTimeout, ids...)

	// Workers of a move to b only while an outcome is unknown, so those
	// of a end up replaying through b what a may have committed.
	l := startLoad(t, "coord-kill", []*client.Client{a.api, b.api}, 3)
	harness.Await(t, 15*time.Second, pollInterval, func() bool {
		return l.acks.Len() >= 20
	}, "load acknowledged 20 allocations before the kill")

	killedAt := time.Now()
	a.proc.Kill()

	// b keeps serving its own workers and takes over a's.
	d := harness.Await(t, 10*time.Second, pollInterval, func() bool {
		return l.successesAfter(killedAt, 1) >= 5
	}, "b acknowledges allocations after a was killed")
	fig.Duration("other_serves_within", d)
	harness.Await(t, 15*time.Second, pollInterval, func() bool {
		return l.successesAfter(killedAt, 0) > 0
	}, "a's workers are served by b")
	l.settle(b.api)
	l.report(fig)
	fig.Count("acknowledged_after_kill", l.successesAfter(killedAt, -1))

	// No allocation is half-written: ledgers and records agree, and every
	// acknowledged allocation is there.
	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks,
		l.acks))
	e.requireViewMatchesEtcd(b, 10*time.Second)

	// The killed coordinator comes back with the same view.
	restartedAt := time.Now()
	a.restart(t)
	fig.Since("restart_time", restartedAt)
	e.requireViewMatchesEtcd(a, 10*time.Second)
}

func TestCoordinatorRestartRebuildsView(t *testing.T) {
	e := newEnv(t)
	fig := harness.NewFigures(t, "coordinator_restart")
	ids := []string{"host-a", "host-b", "host-c"}
	agents := e.startHosts(ids...)
	c := e.startCoordinator("a", "")
	c.awaitAllHealthy(t, startTimeout, ids...)

	// A mixed fleet: allocations of several shapes, a released one, a
	// drained host and a host whose agent stopped on purpose.
	acks := harness.NewAckSet()
	for i, req := range []api.AllocationRequest{
		{CPU: 1, Memory: 1 << 30, GPU: 2, Labels: map[string]string{"host": "host-a"}},
		{GPU: 1, Labels: map[string]string{"host": "host-a"}},
		{Memory: 512 << 20, GPU: 4, Labels: map[string]string{"host": "host-b"}},
		{GPU: 1, Labels: map[string]string{"host": "host-c"}},
		{CPU: 1, Labels: map[string]string{"host": "host-c"}},
	} {
		req.Owner = "restart"
		a := mustAllocate(t, c, req, "restart-"+string(rune('a'+i)))
		acks.Ack(a.ID)
	}
	released := acks.Acked()[1]
	_, err := c.api.Release(ctxFor(t), released)
	require.NoError(t, err)
	acks.Release(released)
	_, err = c.api.Drain(ctxFor(t), "host-b")
	require.NoError(t, err)
	agents["host-c"].Terminate(10 * time.Second)
	c.awaitHealth(t, "host-c", api.HealthStopped, 10*time.Second)
	fig.Count(harness.FigureAcknowledged, acks.Len())

	before := snapshotAPI(t, c)
	e.requireViewMatchesEtcd(c, 5*time.Second)

	// A graceful restart, then a crash and a restart.
	for _, stop := range []struct {
		name string
		sig  syscall.Signal
	}{{"graceful", syscall.SIGTERM}, {"crash", syscall.SIGKILL}} {
		if stop.sig == syscall.SIGKILL {
			c.proc.Kill()
		} else {
			c.proc.Terminate(10 * time.Second)
		}
		restartedAt := time.Now()
		c.restart(t)
		fig.Since("restart_time_"+stop.name, restartedAt)
		after := snapshotAPI(t, c)
		require.Equal(t, before, after, "view after a %s restart", stop.name)
	}
	fig.AddReport(harness.RequireInvariants(t, e.cluster.Client(), e.ks, acks))
}
