package metrics

import (
	"errors"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/agent/internal/heartbeat"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// namespace prefixes every metric name.
const namespace = "remotegpu_agent"

// Reasons for remotegpu_agent_registrations_lost_total.
const (
	LostLease  = "lease_lost"
	LostStatus = "status_lost"
	LostOther  = "other"
)

// Metrics holds the agent's metrics. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	registered    prometheus.Gauge
	registrations prometheus.Counter
	lost          *prometheus.CounterVec
	statusWrites  *prometheus.CounterVec
	etcdErrors    *prometheus.CounterVec
	samples       prometheus.Counter

	// mu guards info and status, the documents the host gauges read.
	mu     sync.Mutex
	info   keyspace.HostInfo
	status *keyspace.HostStatus
}

var _ heartbeat.Observer = (*Metrics)(nil)

// New returns Metrics for the host described by info, registered with a
// fresh registry together with the Go runtime and process collectors.
func New(info keyspace.HostInfo) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), info: info}
	m.registered = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "registered",
		Help: "1 while the host is registered in etcd under a live lease, else 0.",
	})
	m.registrations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "registrations_total",
		Help: "Successful registrations, each under a new lease.",
	})
	m.lost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "registrations_lost_total",
		Help: "Registrations that ended other than by shutdown, by reason: " +
			"lease_lost (keepalive stopped), status_lost, other.",
	}, []string{"reason"})
	m.statusWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "status_writes_total",
		Help: "Status documents written to etcd, by reason.",
	}, []string{"reason"})
	m.etcdErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "etcd_errors_total",
		Help: "Failed etcd calls, by operation.",
	}, []string{"op"})
	m.samples = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "samples_total",
		Help: "Successful reads of CPU, memory and GPU state.",
	})

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.registered, m.registrations, m.lost, m.statusWrites,
		m.etcdErrors, m.samples, hostCollector{m: m},
	)
	return m
}

// Registry returns the registry behind Handler, for tests and for
// gathering without HTTP.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text or protobuf format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry: m.reg,
	})
}

// ObserveSample stores the latest host sample for the host gauges.
func (m *Metrics) ObserveSample(st keyspace.HostStatus) {
	m.samples.Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status = &st
}

// Registered sets remotegpu_agent_registered to 1.
func (m *Metrics) Registered(clientv3.LeaseID) {
	m.registrations.Inc()
	m.registered.Set(1)
}

// RegistrationLost sets remotegpu_agent_registered to 0 and counts the
// loss by its reason.
func (m *Metrics) RegistrationLost(err error) {
	m.registered.Set(0)
	m.lost.WithLabelValues(lostReason(err)).Inc()
}

// StatusWritten counts a status write.
func (m *Metrics) StatusWritten(reason string) {
	m.statusWrites.WithLabelValues(reason).Inc()
}

// EtcdError counts a failed etcd call. The error itself is not exported.
func (m *Metrics) EtcdError(op string, _ error) {
	m.etcdErrors.WithLabelValues(op).Inc()
}

// Stopped sets remotegpu_agent_registered to 0 after deregistration.
func (m *Metrics) Stopped() {
	m.registered.Set(0)
}

func lostReason(err error) string {
	switch {
	case errors.Is(err, heartbeat.ErrLeaseLost):
		return LostLease
	case errors.Is(err, heartbeat.ErrStatusLost):
		return LostStatus
	default:
		return LostOther
	}
}

// snapshot returns the documents the host gauges read.
func (m *Metrics) snapshot() (keyspace.HostInfo, *keyspace.HostStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info, m.status
}
