package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// AgentResult is the footprint of one real agent.
type AgentResult struct {
	Window       time.Duration
	CPUShare     float64
	PeakRSSBytes int64
	// RSS holds one reading per second of the window.
	RSS []float64
}

// RunAgent runs bin/remotegpu-agent with its default interval and TTL
// against env's etcd, waits until its status key exists, then measures
// its CPU and memory over window. CPU and memory come from the real
// collectors; GPUs from the simulated eight-GPU backend, since the
// benchmark machine may have none.
func RunAgent(ctx context.Context, env *Env, window time.Duration) (*AgentResult, error) {
	ks, _ := keyspace.New("/bench-agent")
	const hostID = "bench-agent"
	log := filepath.Join(env.Dir, "agent.log")
	p, err := StartProcess("agent", env.AgentBin, log, nil, []string{
		"run", "--etcd-endpoints", env.Etcd.Endpoint, "--prefix", ks.Prefix(),
		"--host-id", hostID, "--gpu-backend", "mock-dgxa100", "--log-level", "warn",
	})
	if err != nil {
		return nil, err
	}
	defer p.Stop(15 * time.Second)
	if err := waitKey(ctx, env.Etcd.Client, ks.HostStatus(hostID), p, 30*time.Second); err != nil {
		return nil, err
	}

	res := &AgentResult{Window: window}
	first, err := ReadProc(p.PID())
	if err != nil {
		return nil, err
	}
	last := first
	for time.Since(first.At) < window {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.Exited():
			return nil, fmt.Errorf("agent exited during the measurement; see %s", log)
		case <-time.After(time.Second):
		}
		if last, err = ReadProc(p.PID()); err != nil {
			return nil, err
		}
		res.RSS = append(res.RSS, float64(last.RSSBytes))
	}
	res.CPUShare = CPUShare(first, last)
	res.PeakRSSBytes = last.PeakRSSBytes
	return res, nil
}

// waitKey waits until key exists in etcd.
func waitKey(ctx context.Context, cli *clientv3.Client, key string, p *Process,
	timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited before writing %s", p.Name, key)
		default:
		}
		resp, err := cli.Get(ctx, key, clientv3.WithCountOnly())
		if err == nil && resp.Count > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not write %s within %s", p.Name, key, timeout)
}
