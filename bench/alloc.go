package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// allocRequest is the request of every allocation cycle: one GPU of the
// eight a simulated host has, with one core and 1 GiB.
var allocRequest = api.AllocationRequest{CPU: 1, Memory: 1 << 30, GPU: 1, Owner: "bench"}

// AllocFleet is a set of simulated hosts under one prefix with two
// coordinator processes serving it.
type AllocFleet struct {
	Name    string
	Hosts   int
	Sim     *Sim
	Coords  []*Coordinator
	Clients []*client.Client
	etcd    *Etcd
	ks      keyspace.Keyspace
}

// StartAllocFleet registers hosts simulated hosts under /bench-name and
// starts two coordinators on that prefix.
func StartAllocFleet(ctx context.Context, env *Env, name string, hosts,
	maxWorkers int) (_ *AllocFleet, err error) {
	ks, err := keyspace.New("/bench-" + name)
	if err != nil {
		return nil, err
	}
	f := &AllocFleet{Name: name, Hosts: hosts, ks: ks, etcd: env.Etcd}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.Sim, err = StartSim(ctx, SimConfig{
		Client: env.Etcd.Client, Keyspace: ks, IDPrefix: name,
		TTL: 10 * time.Second, StatusInterval: 30 * time.Second,
	}, hosts)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 2 * maxWorkers, MaxIdleConnsPerHost: maxWorkers,
	}}
	for i := range 2 {
		log := filepath.Join(env.Dir, fmt.Sprintf("coordinator-%s-%d.log", name, i))
		c, err := StartCoordinator(ctx, env.CoordinatorBin, env.Etcd.Endpoint, log,
			"--prefix", ks.Prefix())
		if err != nil {
			return nil, err
		}
		f.Coords = append(f.Coords, c)
		if _, err := c.WaitReady(ctx, 60*time.Second); err != nil {
			return nil, err
		}
		cl, err := client.New(c.URL, client.WithHTTPClient(hc))
		if err != nil {
			return nil, err
		}
		f.Clients = append(f.Clients, cl)
	}
	return f, f.waitHosts(ctx)
}

// waitHosts waits until both coordinators list every host healthy.
func (f *AllocFleet) waitHosts(ctx context.Context) error {
	for _, cl := range f.Clients {
		deadline := time.Now().Add(30 * time.Second)
		for {
			hosts, err := cl.ListHosts(ctx)
			if err == nil && countHealth(hosts, api.HealthHealthy) == f.Hosts {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("coordinator %s does not list %d healthy hosts "+
					"after 30s (err %v)", cl.BaseURL(), f.Hosts, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func countHealth(hosts []api.Host, health string) int {
	n := 0
	for _, h := range hosts {
		if h.Health == health {
			n++
		}
	}
	return n
}

// AllocRun is one timed run of allocate+release cycles.
type AllocRun struct {
	LoadResult
	// NoCapacity counts allocations rejected with 409 no_capacity. GaveUp
	// counts those rejected with 409 conflict or 503: with etcd up, a 503 from
	// Allocate means every compare-and-swap attempt lost a race.
	NoCapacity int64
	GaveUp     int64
	// WritesPerOp is etcd revisions per successful cycle; CoordCPUPerOp
	// the two coordinators' CPU time per cycle.
	WritesPerOp   float64
	CoordCPUPerOp time.Duration
	// CASConflicts and Retries are the growth of the coordinators'
	// lost-CAS and allocation-retry counters during the run; -1 when
	// /metrics does not expose them.
	CASConflicts float64
	Retries      float64
}

// Run runs allocate+release cycles from workers goroutines for d, worker
// i through coordinator i mod 2.
func (f *AllocFleet) Run(ctx context.Context, workers int, d time.Duration) (AllocRun, error) {
	conflicts0, retries0, counted0 := f.counters(ctx)
	rev0, err := f.etcd.Revision(ctx)
	if err != nil {
		return AllocRun{}, err
	}
	cpu0, err := f.coordCPU()
	if err != nil {
		return AllocRun{}, err
	}
	var r AllocRun
	noCap, gaveUp := make([]int64, workers), make([]int64, workers)
	res, err := runLoad(ctx, workers, d, func(ctx context.Context, w int) (bool, error) {
		cl := f.Clients[w%len(f.Clients)]
		a, _, err := cl.Allocate(ctx, allocRequest)
		switch {
		case errors.Is(err, client.ErrNoCapacity):
			noCap[w]++
			return false, nil
		case errors.Is(err, client.ErrConflict), errors.Is(err, client.ErrUnavailable):
			gaveUp[w]++
			return false, nil
		case err != nil:
			return false, fmt.Errorf("allocate on %s: %w", cl.BaseURL(), err)
		}
		if _, err := cl.Release(ctx, a.ID); err != nil {
			return false, fmt.Errorf("release %s on %s: %w", a.ID, cl.BaseURL(), err)
		}
		return true, nil
	})
	r.LoadResult = res
	for i := range noCap {
		r.NoCapacity += noCap[i]
		r.GaveUp += gaveUp[i]
	}
	if err != nil {
		return r, err
	}
	r.CASConflicts, r.Retries = -1, -1
	if conflicts1, retries1, counted1 := f.counters(ctx); counted0 && counted1 {
		r.CASConflicts, r.Retries = conflicts1-conflicts0, retries1-retries0
	}
	rev1, err := f.etcd.Revision(ctx)
	if err != nil {
		return r, err
	}
	cpu1, err := f.coordCPU()
	if err != nil {
		return r, err
	}
	if r.Ops > 0 {
		r.WritesPerOp = float64(rev1-rev0) / float64(r.Ops)
		r.CoordCPUPerOp = (cpu1 - cpu0) / time.Duration(r.Ops)
	}
	return r, nil
}

// coordCPU returns the CPU time both coordinators used so far.
func (f *AllocFleet) coordCPU() (time.Duration, error) {
	var total time.Duration
	for _, c := range f.Coords {
		p, err := ReadProc(c.PID())
		if err != nil {
			return 0, err
		}
		total += p.CPU
	}
	return total, nil
}

// counters sums, over both coordinators, the lost compare-and-swap
// transactions (every operation) and the allocation commit retries from
// /metrics. ok is false when a coordinator serves no remotegpu metrics.
func (f *AllocFleet) counters(ctx context.Context) (conflicts, retries float64, ok bool) {
	for _, c := range f.Coords {
		m, served := scrapeMetrics(ctx, c.URL+"/metrics")
		if !served {
			return 0, 0, false
		}
		conflicts += m.sum("cas_conflicts")
		retries += m.sum("allocation_retries")
	}
	return conflicts, retries, true
}

// metricSums maps a metric name to the sum of its samples over labels.
type metricSums map[string]float64

// sum adds the sums of every metric whose name contains part.
func (m metricSums) sum(part string) float64 {
	total := 0.0
	for name, v := range m {
		if strings.Contains(name, part) {
			total += v
		}
	}
	return total
}

// scrapeMetrics reads a Prometheus text exposition. served is false when
// the page is missing or holds no remotegpu_ metric. A labelled counter
// that was never incremented has no sample, so a missing name reads as 0.
func scrapeMetrics(ctx context.Context, url string) (_ metricSums, served bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	sums := metricSums{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := parseSample(sc.Text())
		if !ok {
			continue
		}
		served = served || strings.HasPrefix(name, "remotegpu_")
		sums[name] += value
	}
	return sums, served
}

// parseSample splits an exposition line into metric name and value; ok
// is false for comments, blank lines and unparsable values.
func parseSample(line string) (name string, value float64, ok bool) {
	if line == "" || strings.HasPrefix(line, "#") {
		return "", 0, false
	}
	// The value follows the last '}' when there are labels, since label
	// values may contain spaces; otherwise it follows the name.
	rest := line
	if i := strings.LastIndexByte(line, '}'); i >= 0 {
		name, _, _ = strings.Cut(line[:i], "{")
		rest = line[i+1:]
	} else {
		name, rest, _ = strings.Cut(line, " ")
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", 0, false
	}
	return name, v, true
}

// Check runs the invariant checker on the fleet's prefix.
func (f *AllocFleet) Check(ctx context.Context, env *Env) (*harness.InvariantReport, error) {
	return harness.CheckInvariants(ctx, env.Etcd.Client, f.ks, nil)
}

// Close stops the coordinators and the simulated hosts and revokes the
// hosts' leases.
func (f *AllocFleet) Close() {
	for _, c := range f.Coords {
		_ = c.Stop(15 * time.Second)
	}
	if f.Sim != nil {
		f.Sim.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = f.Sim.Revoke(ctx)
	}
}
