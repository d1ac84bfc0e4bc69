package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Settings of the fleet-scale scenario.
const (
	// scaleTTL is the simulated agents' lease TTL, the agent's default.
	scaleTTL = 10 * time.Second
	// scaleStatusInterval is the agent's default --status-max-interval:
	// an idle host rewrites its status this often.
	scaleStatusInterval = 30 * time.Second
	// killBatch is the number of agents whose keepalive is stopped.
	killBatch = 100
)

// ScaleResult is the fleet-scale figures at one fleet size.
type ScaleResult struct {
	Hosts int
	// Register is the time to register every simulated host.
	Register time.Duration
	// Ready is start → /readyz 200; View is start → GET /v1/hosts lists
	// every host healthy.
	Ready time.Duration
	View  time.Duration
	// Steady state over Window: etcd revisions (writes) per second,
	// lease keepalives per second and the coordinator's CPU share.
	Window       time.Duration
	WritesPerSec float64
	KeepAlivesPS float64
	CoordCPU     float64
	// PeakRSSBytes is the coordinator's VmHWM at the end.
	PeakRSSBytes int64
	// Detect holds, per stopped agent, the time from stopping its
	// keepalive to the coordinator reporting it unhealthy; AfterLeaseEnd
	// the time from the lease's end (last renewal + TTL) to that report.
	Detect        []time.Duration
	AfterLeaseEnd []time.Duration
	// Undetected counts stopped agents never reported unhealthy;
	// FalsePositives counts live hosts reported not healthy.
	Undetected     int
	FalsePositives int
	TTL            time.Duration
}

// RunScale runs n simulated agents against one coordinator process on a
// fresh etcd member and measures it.
func RunScale(ctx context.Context, env *Env, n int, window time.Duration) (*ScaleResult, error) {
	etcd, err := StartEtcd(env.Dir)
	if err != nil {
		return nil, err
	}
	defer etcd.Close()
	ks, _ := keyspace.New("/bench-scale")
	res := &ScaleResult{Hosts: n, Window: window, TTL: scaleTTL}

	start := time.Now()
	sim, err := StartSim(ctx, SimConfig{
		Client: etcd.Client, Keyspace: ks, IDPrefix: "scale",
		TTL: scaleTTL, StatusInterval: scaleStatusInterval,
	}, n)
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	res.Register = time.Since(start)
	env.Logf("scale %d: registered in %s", n, res.Register.Round(time.Millisecond))

	log := filepath.Join(env.Dir, fmt.Sprintf("coordinator-scale-%d.log", n))
	start = time.Now()
	coord, err := StartCoordinator(ctx, env.CoordinatorBin, etcd.Endpoint, log,
		"--prefix", ks.Prefix())
	if err != nil {
		return nil, err
	}
	defer coord.Stop(15 * time.Second)
	if res.Ready, err = coord.WaitReady(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	cl, err := client.New(coord.URL)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, cl, n, 2*time.Minute); err != nil {
		return nil, err
	}
	res.View = time.Since(start)
	env.Logf("scale %d: ready %s, view %s", n, res.Ready.Round(time.Millisecond),
		res.View.Round(time.Millisecond))

	if err := measureSteady(ctx, etcd, sim, coord, res); err != nil {
		return nil, err
	}
	if err := measureDetection(ctx, cl, sim, res); err != nil {
		return nil, err
	}
	p, err := ReadProc(coord.PID())
	if err != nil {
		return nil, err
	}
	res.PeakRSSBytes = p.PeakRSSBytes
	return res, nil
}

// waitHealthy waits until the coordinator lists n hosts, all healthy.
func waitHealthy(ctx context.Context, cl *client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		hosts, err := cl.ListHosts(ctx)
		healthy := countHealth(hosts, api.HealthHealthy)
		if err == nil && len(hosts) == n && healthy == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("coordinator lists %d hosts, %d healthy, want %d "+
				"after %s (last error %v)", len(hosts), healthy, n, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measureSteady samples revision growth, keepalives and the coordinator's
// CPU over res.Window.
func measureSteady(ctx context.Context, etcd *Etcd, sim *Sim, coord *Coordinator,
	res *ScaleResult) error {
	rev0, err := etcd.Revision(ctx)
	if err != nil {
		return err
	}
	ka0 := sim.KeepAlives()
	p0, err := ReadProc(coord.PID())
	if err != nil {
		return err
	}
	select {
	case <-time.After(res.Window):
	case <-ctx.Done():
		return ctx.Err()
	}
	rev1, err := etcd.Revision(ctx)
	if err != nil {
		return err
	}
	p1, err := ReadProc(coord.PID())
	if err != nil {
		return err
	}
	secs := p1.At.Sub(p0.At).Seconds()
	res.WritesPerSec = float64(rev1-rev0) / secs
	res.KeepAlivesPS = float64(sim.KeepAlives()-ka0) / secs
	res.CoordCPU = CPUShare(p0, p1)
	return nil
}

// measureDetection stops the keepalive of the first killBatch agents and
// polls each one's health until the coordinator reports it unhealthy.
// Meanwhile it lists every host every two seconds to catch live hosts
// reported unhealthy.
func measureDetection(ctx context.Context, cl *client.Client, sim *Sim,
	res *ScaleResult) error {
	batch := min(killBatch, res.Hosts/2)
	killed := make(map[string]bool, batch)
	for i := range batch {
		killed[sim.HostID(i)] = true
	}
	stopped := sim.StopKeepAlive(0, batch)
	deadline := stopped.Add(res.TTL + 15*time.Second)

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var fpErr error
	wg.Go(func() { fpErr = watchFalsePositives(pctx, cl, killed, res) })

	found := pollUnhealthy(ctx, cl, sim, batch, deadline)
	cancel()
	wg.Wait()
	for i := range batch {
		if seen, ok := found[sim.HostID(i)]; ok {
			res.Detect = append(res.Detect, seen.Sub(stopped))
			res.AfterLeaseEnd = append(res.AfterLeaseEnd, seen.Sub(sim.LeaseEnd(i)))
		} else {
			res.Undetected++
		}
	}
	// One last full list after every stopped host was seen.
	hosts, err := cl.ListHosts(ctx)
	if err != nil {
		return errors.Join(fpErr, fmt.Errorf("list hosts: %w", err))
	}
	res.FalsePositives = max(res.FalsePositives, countFalse(hosts, killed))
	return fpErr
}

// pollUnhealthy polls the health of hosts 0..batch-1 with 8 workers and
// returns, per host, when it was first seen unhealthy.
func pollUnhealthy(ctx context.Context, cl *client.Client, sim *Sim, batch int,
	deadline time.Time) map[string]time.Time {
	var mu sync.Mutex
	found := make(map[string]time.Time, batch)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				pending := 0
				for i := w; i < batch; i += workers {
					id := sim.HostID(i)
					mu.Lock()
					_, done := found[id]
					mu.Unlock()
					if done {
						continue
					}
					pending++
					h, err := cl.HostHealth(ctx, id)
					if err == nil && h.Health == api.HealthUnhealthy {
						mu.Lock()
						found[id] = time.Now()
						mu.Unlock()
					}
				}
				if pending == 0 {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return found
}

func watchFalsePositives(ctx context.Context, cl *client.Client,
	killed map[string]bool, res *ScaleResult) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		hosts, err := cl.ListHosts(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("list hosts: %w", err)
		}
		res.FalsePositives = max(res.FalsePositives, countFalse(hosts, killed))
	}
}

// countFalse counts hosts outside killed that are not healthy.
func countFalse(hosts []api.Host, killed map[string]bool) int {
	n := 0
	for _, h := range hosts {
		if !killed[h.ID] && h.Health != api.HealthHealthy {
			n++
		}
	}
	return n
}
