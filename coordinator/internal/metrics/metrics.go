package metrics

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/fleet"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// namespace prefixes every metric name.
const namespace = "remotegpu_coordinator"

// newHost is the from label of a host seen for the first time.
const newHost = "new"

// Health and state values exported even when no host or allocation has
// them.
var (
	healthValues = []string{
		api.HealthHealthy, api.HealthUnhealthy, api.HealthStopped,
		api.HealthUnknown,
	}
	stateValues = []string{
		keyspace.StateActive, keyspace.StateLost, keyspace.StateExpired,
		keyspace.StateReleased,
	}
)

// StatsSource returns the fleet's gauges; *fleet.Fleet implements it.
type StatsSource interface {
	Stats() fleet.Stats
}

var _ StatsSource = (*fleet.Fleet)(nil)

// Metrics holds a coordinator's metrics. Create it with New, pass it as
// fleet.Config.Observer, then call SetSource with the fleet.
type Metrics struct {
	reg *prometheus.Registry

	transitions *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	conflicts   *prometheus.CounterVec
	relists     *prometheus.CounterVec
	etcdErrors  *prometheus.CounterVec
	// stateChanges counts committed allocation state changes.
	stateChanges *prometheus.CounterVec

	// mu guards source.
	mu     sync.Mutex
	source StatsSource
}

var (
	_ fleet.Observer           = (*Metrics)(nil)
	_ fleet.AllocationObserver = (*Metrics)(nil)
)

// New returns Metrics registered with a fresh registry together with the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.transitions = counterVec("host_health_transitions_total",
		"Host health changes seen by this coordinator, by from and to "+
			"health; from is \"new\" for a host seen for the first time.",
		"from", "to")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "allocation_duration_seconds",
		Help: "Time to answer an allocation request, by outcome.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25,
			.5, 1, 2.5, 5, 10},
	}, []string{"outcome"})
	m.retries = counterVec("allocation_retries_total",
		"Commit attempts after the first, by allocation outcome.", "outcome")
	m.conflicts = counterVec("cas_conflicts_total",
		"Compare-and-swap transactions lost to a concurrent change, by "+
			"operation.", "op")
	m.relists = counterVec("watch_relists_total",
		"Lists of the keyspace after a failed or closed watch, by reason.",
		"reason")
	m.etcdErrors = counterVec("etcd_errors_total",
		"Failed etcd calls, by operation.", "op")

	// The reason of a state change is free text that may embed a
	// setting, so it stays in the allocation record and out of the labels.
	m.stateChanges = counterVec("allocation_state_changes_total",
		"Allocation state changes this coordinator committed, by from "+
			"and to state.", "from", "to")
	m.initSeries()

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.transitions, m.latency, m.retries, m.conflicts, m.relists,
		m.etcdErrors, m.stateChanges, statsCollector{m: m},
	)
	return m
}

// initSeries creates every counter series whose labels are known in
// advance, so a scrape shows 0 rather than nothing before the first event
// and rate() works from the start.
func (m *Metrics) initSeries() {
	outcomes := []string{fleet.OutcomeCreated, fleet.OutcomeExisting,
		fleet.OutcomeInvalid, fleet.OutcomeNoCapacity, fleet.OutcomeConflict,
		fleet.OutcomeUnavailable}
	for _, o := range outcomes {
		m.retries.WithLabelValues(o)
	}
	writes := []string{fleet.OpAllocate, fleet.OpRelease, fleet.OpRenew,
		fleet.OpExpire, fleet.OpLost, fleet.OpRestore, fleet.OpDrain,
		fleet.OpRemove, fleet.OpRefreshExpiry}
	for _, op := range writes {
		m.conflicts.WithLabelValues(op)
	}
	for _, op := range append(writes, fleet.OpRead, fleet.OpList,
		fleet.OpWatch, fleet.OpLease) {
		m.etcdErrors.WithLabelValues(op)
	}
	for _, r := range []string{fleet.RelistCompacted, fleet.RelistClosed,
		fleet.RelistError} {
		m.relists.WithLabelValues(r)
	}
	for _, c := range [][2]string{
		{keyspace.StateActive, keyspace.StateReleased},
		{keyspace.StateActive, keyspace.StateExpired},
		{keyspace.StateActive, keyspace.StateLost},
		{keyspace.StateLost, keyspace.StateActive},
		{keyspace.StateLost, keyspace.StateReleased},
		{keyspace.StateLost, keyspace.StateExpired},
	} {
		m.stateChanges.WithLabelValues(c[0], c[1])
	}
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: name, Help: help,
	}, labels)
}

// SetSource sets where the gauges come from. Until it is called the
// gauges are left out of scrapes.
func (m *Metrics) SetSource(s StatsSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.source = s
}

// Registry returns the registry behind Handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text or protobuf format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// HostHealthChanged counts a health transition.
func (m *Metrics) HostHealthChanged(_, from, to string) {
	if from == "" {
		from = newHost
	}
	m.transitions.WithLabelValues(from, to).Inc()
}

// AllocationFinished records an allocation's latency and retries.
func (m *Metrics) AllocationFinished(outcome string, attempts int,
	latency time.Duration) {
	m.latency.WithLabelValues(outcome).Observe(latency.Seconds())
	if attempts > 1 {
		m.retries.WithLabelValues(outcome).Add(float64(attempts - 1))
	}
}

// CASConflict counts a lost compare-and-swap.
func (m *Metrics) CASConflict(op string) {
	m.conflicts.WithLabelValues(op).Inc()
}

// Relisted counts a re-list after a failed watch.
func (m *Metrics) Relisted(reason string) {
	m.relists.WithLabelValues(reason).Inc()
}

// EtcdError counts a failed etcd call.
func (m *Metrics) EtcdError(op string) {
	m.etcdErrors.WithLabelValues(op).Inc()
}

func (m *Metrics) stats() (fleet.Stats, bool) {
	m.mu.Lock()
	src := m.source
	m.mu.Unlock()
	if src == nil {
		return fleet.Stats{}, false
	}
	return src.Stats(), true
}

var (
	hostsDesc = prometheus.NewDesc(namespace+"_hosts",
		"Registered hosts by health.", []string{"health"}, nil)
	allocationsDesc = prometheus.NewDesc(namespace+"_allocations",
		"Allocation records in the coordinator's view, by state.",
		[]string{"state"}, nil)
	revisionDesc = prometheus.NewDesc(namespace+"_view_revision",
		"Last etcd revision applied to the coordinator's view.", nil, nil)
)

// statsCollector turns fleet.Stats into gauges at each scrape.
type statsCollector struct{ m *Metrics }

var _ prometheus.Collector = statsCollector{}

// Describe sends the gauges' descriptions.
func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hostsDesc
	ch <- allocationsDesc
	ch <- revisionDesc
}

// Collect sends the gauges of the current fleet.Stats.
func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.m.stats()
	if !ok {
		return
	}
	for _, v := range withKnown(healthValues, s.HostsByHealth) {
		ch <- prometheus.MustNewConstMetric(hostsDesc, prometheus.GaugeValue,
			float64(s.HostsByHealth[v]), v)
	}
	for _, v := range withKnown(stateValues, s.AllocationsByState) {
		ch <- prometheus.MustNewConstMetric(allocationsDesc,
			prometheus.GaugeValue, float64(s.AllocationsByState[v]), v)
	}
	ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue,
		float64(s.Revision))
}

// withKnown returns known followed by any other key of counts.
func withKnown(known []string, counts map[string]int) []string {
	out := append([]string(nil), known...)
	for k := range counts {
		if !slices.Contains(known, k) {
			out = append(out, k)
		}
	}
	return out
}

// AllocationStateChanged counts an allocation state change that this
// coordinator committed, such as active to expired. The reason is not a
// label, because it is free text.
func (m *Metrics) AllocationStateChanged(from, to, _ string) {
	m.stateChanges.WithLabelValues(from, to).Inc()
}
