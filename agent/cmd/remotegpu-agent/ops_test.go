package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/agent/internal/gpu"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
)

// scrape fetches and parses a Prometheus text endpoint.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// value returns the value of the series of family name whose labels
// include want, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string,
	want map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if hasLabels(m, want) {
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(want)
}

func TestMetricsEndpointReportsRegistration(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	port := etcdtest.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	p := startAgent(t, nil, runArgs(c.Endpoint, "/metrics", "node-m",
		"--metrics-listen", "127.0.0.1:"+strconv.Itoa(port))...)
	newHostKeys(t, c.Client, "/metrics", "node-m").waitRegistered(10*time.Second, "")

	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		var err error
		fams, err = scrape(url)
		if err != nil {
			return false
		}
		v, ok := value(fams, "remotegpu_agent_registered", nil)
		_, sampled := value(fams, "remotegpu_agent_cpu_utilization_ratio", nil)
		return ok && v == 1 && sampled
	}, 10*time.Second, 100*time.Millisecond, "agent output:\n%s", p.stderr)

	v, ok := value(fams, "remotegpu_agent_status_writes_total",
		map[string]string{"reason": "registered"})
	assert.True(t, ok)
	assert.GreaterOrEqual(t, v, 1.0)
	v, _ = value(fams, "remotegpu_agent_memory_total_bytes", nil)
	assert.Positive(t, v)
	v, _ = value(fams, "remotegpu_agent_memory_available_bytes", nil)
	assert.Positive(t, v)
	v, _ = value(fams, "remotegpu_agent_info",
		map[string]string{"host_id": "node-m"})
	assert.Equal(t, 1.0, v)

	// The simulated DGX A100 has 8 healthy GPUs with 40 GiB each.
	assert.Len(t, fams["remotegpu_agent_gpu_healthy"].GetMetric(), 8)
	for i := range 8 {
		labels := map[string]string{
			"uuid": gpu.SimulatedUUID("node-m", i), "index": strconv.Itoa(i),
		}
		v, ok := value(fams, "remotegpu_agent_gpu_healthy", labels)
		assert.True(t, ok, "GPU %d health", i)
		assert.Equal(t, 1.0, v, "GPU %d health", i)
		v, _ = value(fams, "remotegpu_agent_gpu_memory_total_bytes", labels)
		assert.Equal(t, float64(40960<<20), v, "GPU %d memory", i)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		assert.Contains(t, fams, name)
	}

	// Losing etcd for longer than the TTL loses the lease.
	c.Stop()
	require.Eventually(t, func() bool {
		fams, err := scrape(url)
		if err != nil {
			return false
		}
		registered, _ := value(fams, "remotegpu_agent_registered", nil)
		lost, _ := value(fams, "remotegpu_agent_registrations_lost_total",
			map[string]string{"reason": "lease_lost"})
		errs := 0.0
		for _, m := range fams["remotegpu_agent_etcd_errors_total"].GetMetric() {
			errs += m.GetCounter().GetValue()
		}
		return registered == 0 && lost >= 1 && errs >= 1
	}, 15*time.Second, 200*time.Millisecond, "agent output:\n%s", p.stderr)

	p.signal(t, syscall.SIGTERM)
	assert.Equal(t, 0, p.wait(t, 10*time.Second))
}

func TestMetricsListenInvalidIsUsageError(t *testing.T) {
	t.Parallel()
	p := startAgent(t, nil, runArgs("http://127.0.0.1:1", "/x", "node-x",
		"--metrics-listen", "no-port")...)
	assert.Equal(t, 2, p.wait(t, 10*time.Second))
	assert.Contains(t, p.stderr.String(), `invalid --metrics-listen "no-port"`)
}

func TestMetricsPortTakenKeepsAgentRunning(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()

	c := etcdtest.Start(t)
	p := startAgent(t, nil, runArgs(c.Endpoint, "/taken", "node-t",
		"--metrics-listen", l.Addr().String())...)
	newHostKeys(t, c.Client, "/taken", "node-t").waitRegistered(10*time.Second, "")
	assert.Contains(t, p.stderr.String(), "metrics endpoint not started")
	p.signal(t, syscall.SIGTERM)
	assert.Equal(t, 0, p.wait(t, 10*time.Second))
}

// notifySocket records what a daemon sends to NOTIFY_SOCKET.
type notifySocket struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	// mu guards messages.
	mu       sync.Mutex
	messages []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram",
		&net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	n := &notifySocket{path: path, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		buf := make([]byte, 4096)
		for {
			size, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.messages = append(n.messages, string(buf[:size]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-n.done
	})
	return n
}

func (n *notifySocket) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	for _, m := range n.messages {
		if strings.HasPrefix(m, prefix) {
			total++
		}
	}
	return total
}

func TestNotifyReadyWithoutEtcd(t *testing.T) {
	t.Parallel()
	n := listenNotify(t)
	closed := "http://127.0.0.1:" + strconv.Itoa(etcdtest.FreePort(t))
	p := startAgent(t, []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000"},
		runArgs(closed, "/n", "node-n", "--metrics-listen", "")...)

	// Ready comes without etcd, the status lines name the problem, and
	// the retry loop keeps the watchdog fed.
	require.Eventually(t, func() bool {
		return n.count("READY=1") == 1 &&
			n.count("STATUS=etcd call") >= 1 &&
			n.count("WATCHDOG=1") >= 4
	}, 10*time.Second, 50*time.Millisecond, "agent output:\n%s", p.stderr)

	p.signal(t, syscall.SIGTERM)
	assert.Equal(t, 0, p.wait(t, 10*time.Second))
	assert.Equal(t, 1, n.count("STOPPING=1"))
	assert.Equal(t, 1, n.count("READY=1"))
}
