package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/fleet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixedStats is a StatsSource with a fixed snapshot.
type fixedStats fleet.Stats

func (s fixedStats) Stats() fleet.Stats { return fleet.Stats(s) }

func TestGaugesFromStats(t *testing.T) {
	m := New()
	count, err := testutil.GatherAndCount(m.Registry(), "remotegpu_coordinator_hosts")
	require.NoError(t, err)
	assert.Zero(t, count, "no gauges before SetSource")

	m.SetSource(fixedStats{
		HostsByHealth:      map[string]int{"healthy": 3, "stopped": 1},
		AllocationsByState: map[string]int{"active": 2, "odd": 1},
		Revision:           42,
	})
	want := `
# HELP remotegpu_coordinator_hosts Registered hosts by health.
# TYPE remotegpu_coordinator_hosts gauge
remotegpu_coordinator_hosts{health="healthy"} 3
remotegpu_coordinator_hosts{health="stopped"} 1
remotegpu_coordinator_hosts{health="unhealthy"} 0
remotegpu_coordinator_hosts{health="unknown"} 0
# HELP remotegpu_coordinator_allocations Allocation records in the coordinator's view, by state.
# TYPE remotegpu_coordinator_allocations gauge
remotegpu_coordinator_allocations{state="active"} 2
remotegpu_coordinator_allocations{state="expired"} 0
remotegpu_coordinator_allocations{state="lost"} 0
remotegpu_coordinator_allocations{state="odd"} 1
remotegpu_coordinator_allocations{state="released"} 0
# HELP remotegpu_coordinator_view_revision Last etcd revision applied to the coordinator's view.
# TYPE remotegpu_coordinator_view_revision gauge
remotegpu_coordinator_view_revision 42
`
	assert.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"remotegpu_coordinator_hosts", "remotegpu_coordinator_allocations",
		"remotegpu_coordinator_view_revision"))
}

func TestObserverEvents(t *testing.T) {
	m := New()
	m.HostHealthChanged("h1", "", "healthy")
	m.HostHealthChanged("h1", "healthy", "unhealthy")
	m.HostHealthChanged("h1", "unhealthy", "healthy")
	m.AllocationFinished(fleet.OutcomeCreated, 3, 20*time.Millisecond)
	m.AllocationFinished(fleet.OutcomeNoCapacity, 1, time.Millisecond)
	m.CASConflict(fleet.OpAllocate)
	m.CASConflict(fleet.OpAllocate)
	m.Relisted(fleet.RelistCompacted)
	m.EtcdError(fleet.OpWatch)
	m.AllocationStateChanged("active", "expired", "TTL ran out without renewal")

	assert.Equal(t, 1.0, testutil.ToFloat64(m.transitions.WithLabelValues("new", "healthy")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.transitions.WithLabelValues("healthy", "unhealthy")))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.retries.WithLabelValues(fleet.OutcomeCreated)))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.conflicts.WithLabelValues(fleet.OpAllocate)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.relists.WithLabelValues(fleet.RelistCompacted)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.etcdErrors.WithLabelValues(fleet.OpWatch)))
	assert.Equal(t, 1.0, testutil.ToFloat64(
		m.stateChanges.WithLabelValues("active", "expired")))
	assert.Equal(t, 2, testutil.CollectAndCount(m.latency))

	problems, err := testutil.GatherAndLint(m.Registry())
	require.NoError(t, err)
	for _, p := range problems {
		assert.False(t, strings.HasPrefix(p.Metric, namespace), "%s: %s", p.Metric, p.Text)
	}
}

func TestCountersStartAtZero(t *testing.T) {
	m := New()
	want := map[string]int{
		"remotegpu_coordinator_cas_conflicts_total":            9,
		"remotegpu_coordinator_etcd_errors_total":              13,
		"remotegpu_coordinator_allocation_retries_total":       6,
		"remotegpu_coordinator_watch_relists_total":            3,
		"remotegpu_coordinator_allocation_state_changes_total": 6,
	}
	for name, n := range want {
		count, err := testutil.GatherAndCount(m.Registry(), name)
		require.NoError(t, err)
		assert.Equal(t, n, count, "series of %s before any event", name)
	}
	assert.Zero(t, testutil.ToFloat64(m.conflicts.WithLabelValues(fleet.OpAllocate)))
}
