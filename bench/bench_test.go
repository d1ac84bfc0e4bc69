package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{5, 1, 3, 2, 4})
	assert.Equal(t, Summary{N: 5, Median: 3, Min: 1, Max: 5}, s)
	assert.Equal(t, "3.0ms (1.0–5.0)", s.Format("%.1f", "ms"))
	assert.Equal(t, "n/a", Summarize(nil).Format("%.1f", ""))
	assert.Equal(t, "7", Summarize([]float64{7}).Format("%.0f", ""))
}

func TestQuantile(t *testing.T) {
	values := []float64{30, 10, 50, 20, 40}
	assert.InDelta(t, 30, Quantile(values, 0.5), 1e-9)
	assert.InDelta(t, 48.4, Quantile(values, 0.96), 1e-9)
	assert.InDelta(t, 50, Quantile(values, 1), 1e-9)
	assert.Equal(t, 2*time.Second,
		DurationQuantile([]time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, 0.5))
	assert.Equal(t, []float64{30, 10, 50, 20, 40}, values, "Quantile must not sort its input")
}

func TestParseStatCPU(t *testing.T) {
	// The command name contains a space and a ')', as a process may name
	// itself.
	stat := []byte("1234 (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 " +
		"250 50 0 0 20 0 4 0 100 1000000 200 18446744073709551615")
	cpu, err := parseStatCPU(stat)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, cpu)

	_, err = parseStatCPU([]byte("1234 (x) S 1"))
	assert.ErrorContains(t, err, "fields")
}

func TestReadProcSelf(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, s.RSSBytes)
	assert.GreaterOrEqual(t, s.PeakRSSBytes, s.RSSBytes)

	_, err = ReadProc(-1)
	assert.Error(t, err)
}

func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine()
	assert.Positive(t, m.Cores)
	assert.Positive(t, m.MemoryBytes)
	assert.Contains(t, m.String(), "go1.")
}

const benchOutput = `goos: linux
BenchmarkSelect/least_used/hosts=1000-2   	  1000	  4608 ns/op	  7000 p99-ns	  128 B/op	  1 allocs/op
BenchmarkSelect/least_used/hosts=1000-2   	  1000	  4800 ns/op	  7200 p99-ns	  128 B/op	  1 allocs/op
BenchmarkSelect/random/hosts=10000-2      	   100	 60000 ns/op	 52000 p99-ns	  128 B/op	  1 allocs/op
PASS
`

func TestParseBenchOutput(t *testing.T) {
	rows, err := ParseBenchOutput(strings.NewReader(benchOutput))
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Equal(t, "BenchmarkSelect/least_used/hosts=1000", rows[0].Name)
	assert.Equal(t, 2, rows[0].NsPerOp.N)
	assert.InDelta(t, 4704, rows[0].NsPerOp.Median, 1e-9)
	assert.InDelta(t, 1, rows[0].AllocsOp.Median, 1e-9)
	assert.InDelta(t, 52000, rows[1].P99Ns.Median, 1e-9)

	worst, name := WorstP99(rows, "/hosts=10000")
	assert.InDelta(t, 52000, worst, 1e-9)
	assert.Equal(t, "BenchmarkSelect/random/hosts=10000", name)
	worst, _ = WorstP99(rows, "/hosts=100000")
	assert.InDelta(t, -1, worst, 1e-9)

	_, err = ParseBenchOutput(strings.NewReader("BenchmarkX-2 10 abc ns/op\n"))
	assert.ErrorContains(t, err, "abc")
}

func TestScrapeMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			fmt.Fprint(w, "# HELP remotegpu_cas_conflicts_total lost CAS\n"+
				"remotegpu_cas_conflicts_total{op=\"allocate\"} 3\n"+
				"remotegpu_cas_conflicts_total{op=\"re lease\"} 2 1700000000\n"+
				"go_goroutines 9\n"+
				"broken_line\n")
		case "/other":
			fmt.Fprint(w, "go_goroutines 9\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	m, served := scrapeMetrics(ctx, srv.URL+"/metrics")
	assert.True(t, served)
	assert.InDelta(t, 5, m.sum("cas_conflicts"), 1e-9)
	assert.InDelta(t, 0, m.sum("allocation_retries"), 1e-9)
	assert.InDelta(t, 9, m["go_goroutines"], 1e-9)

	_, served = scrapeMetrics(ctx, srv.URL+"/other")
	assert.False(t, served, "a page without remotegpu metrics")
	_, served = scrapeMetrics(ctx, srv.URL+"/none")
	assert.False(t, served, "a missing page")
}

func TestReportMarkdown(t *testing.T) {
	rep := &Report{
		Machine: Machine{CPUModel: "test CPU", Cores: 2, GoVersion: "go1.26"},
		Started: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Throughput: &ThroughputResult{Runs: 1, Duration: time.Second, Rows: []ThroughputRow{{
			Concurrency: 8, CAS: Summarize([]float64{1000}),
			Modes: []ModeResult{
				{Name: "spread", Hosts: 100, Ratio: Summarize([]float64{0.8}), CASConflicts: -1, Retries: -1},
				{Name: "contended", Hosts: 4, Ratio: Summarize([]float64{0.4}), CASConflicts: 7},
			},
		}}},
		Agent: &AgentResult{Window: time.Second, CPUShare: 0.002, PeakRSSBytes: 20 << 20},
	}
	var b bytes.Buffer
	rep.WriteMarkdown(&b)
	md := b.String()
	assert.Contains(t, md, "test CPU, 2 cores")
	assert.Contains(t, md, "| spread allocation ≥ 0.7× etcd CAS at concurrency 8 | 0.80× | PASS |")
	assert.Contains(t, md, "0.40×, overcommitted hosts 0 | MISS |")
	assert.Contains(t, md, "n/a (no /metrics) | n/a (no /metrics)")
	assert.Contains(t, md, "| agent peak RSS < 40 MiB | 20.0 MiB | PASS |")
}

// TestSimAndCAS runs the simulated hosts and the CAS load on a real
// embedded etcd member.
func TestSimAndCAS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	e, err := StartEtcd(t.TempDir())
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cas, err := RunCAS(ctx, e.Client, "/bench-test/cas", 2, 200*time.Millisecond)
	require.NoError(t, err)
	assert.Positive(t, cas.Ops)
	assert.Zero(t, cas.Failures, "each worker owns its key")
	assert.Len(t, cas.Latencies, int(cas.Ops))

	ks, err := keyspace.New("/bench-test")
	require.NoError(t, err)
	sim, err := StartSim(ctx, SimConfig{
		Client: e.Client, Keyspace: ks, IDPrefix: "t", TTL: 2 * time.Second,
		StatusInterval: time.Second, Parallel: 2,
	}, 3)
	require.NoError(t, err)
	defer sim.Close()

	rep, err := harness.CheckInvariants(ctx, e.Client, ks, nil)
	require.NoError(t, err)
	assert.True(t, rep.OK(), rep.Summary())
	assert.Equal(t, 3, rep.Hosts)
	assert.Equal(t, 3, rep.LiveHosts)
	assert.Equal(t, "t-000002", sim.HostID(2))

	stopped := sim.StopKeepAlive(0, 1)
	assert.False(t, sim.LeaseEnd(0).After(stopped.Add(2*time.Second)))
	require.NoError(t, sim.Revoke(ctx))
	resp, err := e.Client.Get(ctx, ks.HostsPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	assert.EqualValues(t, 3, resp.Count, "only the three info keys outlive the leases")
}

func TestTopPerfLines(t *testing.T) {
	report := "# Overhead  Symbol\n" +
		"     1.50%  [.] runtime.mallocgc   -   -\n" +
		"    12.00%  [k] finish_task_switch\n" +
		"\n" +
		"     3.25%  [.] fleet.(*Fleet).gpusFor\n"
	got := topPerfLines(report, 2)
	assert.Equal(t, "    12.00%  [k] finish_task_switch\n"+
		"     3.25%  [.] fleet.(*Fleet).gpusFor", got)
}
