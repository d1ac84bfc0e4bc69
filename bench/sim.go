package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Shape of every simulated host.
const (
	simCPU       = 64
	simMemory    = 512 << 30
	simGPUs      = 8
	simGPUMemory = 40 << 30
	simGPUName   = "NVIDIA A100-SXM4-40GB"
)

// SimConfig sets up simulated hosts.
type SimConfig struct {
	Client   *clientv3.Client
	Keyspace keyspace.Keyspace
	// IDPrefix starts every host ID; IDs are IDPrefix-000001 and up.
	IDPrefix string
	// TTL is each host's lease TTL; clientv3 renews it every TTL/3.
	TTL time.Duration
	// StatusInterval is the time between two status writes of one host,
	// as an idle agent's --status-max-interval; 0 writes status once.
	StatusInterval time.Duration
	// Parallel bounds concurrent registrations and status writes.
	Parallel int
}

// simHost is one simulated agent.
type simHost struct {
	id    string
	lease clientv3.LeaseID
	// stop ends the keepalive of the lease.
	stop context.CancelFunc
	info string
	// renewed is when the lease was last granted or renewed, in Unix
	// nanoseconds on this process's clock.
	renewed atomic.Int64
}

// Sim is a set of simulated agents. Each host has its own lease, kept
// alive over the one client's lease stream, an info document and a status
// document under the lease, like a real agent's.
type Sim struct {
	cfg SimConfig

	// mu guards hosts.
	mu    sync.Mutex
	hosts []*simHost

	keepAlives atomic.Int64
	writes     atomic.Int64
	wg         sync.WaitGroup
	cancel     context.CancelFunc
	ctx        context.Context
}

// StartSim registers n hosts and keeps them alive until Close or Stop.
func StartSim(ctx context.Context, cfg SimConfig, n int) (*Sim, error) {
	if cfg.Parallel <= 0 {
		cfg.Parallel = 32
	}
	s := &Sim{cfg: cfg, hosts: make([]*simHost, n)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.register(ctx, n); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.StatusInterval > 0 {
		s.wg.Go(s.refreshStatus)
	}
	return s, nil
}

// HostID returns the ID of host i.
func (s *Sim) HostID(i int) string {
	return fmt.Sprintf("%s-%06d", s.cfg.IDPrefix, i)
}

func (s *Sim) register(ctx context.Context, n int) error {
	next := atomic.Int64{}
	errs := make(chan error, s.cfg.Parallel)
	var wg sync.WaitGroup
	for range s.cfg.Parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := s.registerHost(ctx, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (s *Sim) registerHost(ctx context.Context, i int) error {
	h := &simHost{id: s.HostID(i)}
	info := keyspace.HostInfo{
		ID: h.id, Name: h.id, IPAddress: "127.0.0.1",
		TotalCPU: simCPU, TotalMemory: simMemory,
		AgentVersion: "bench-sim", InstanceID: h.id + "-1",
		RegisteredAt: time.Now().UTC(),
	}
	for g := range simGPUs {
		info.GPUs = append(info.GPUs, keyspace.GPUInfo{
			Index: g, UUID: fmt.Sprintf("GPU-%s-%d", h.id, g),
			Name: simGPUName, MemoryTotal: simGPUMemory,
		})
	}
	var err error
	if h.info, err = keyspace.Encode(info); err != nil {
		return err
	}

	ttl := int64(s.cfg.TTL / time.Second)
	lease, err := s.cfg.Client.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("grant lease for host %s: %w", h.id, err)
	}
	h.lease = lease.ID
	h.renewed.Store(time.Now().UnixNano())
	if err := s.writeHost(ctx, h); err != nil {
		return err
	}
	kctx, stop := context.WithCancel(s.ctx)
	h.stop = stop
	ch, err := s.cfg.Client.KeepAlive(kctx, h.lease)
	if err != nil {
		stop()
		return fmt.Errorf("keep lease of host %s alive: %w", h.id, err)
	}
	s.wg.Go(func() {
		for range ch {
			h.renewed.Store(time.Now().UnixNano())
			s.keepAlives.Add(1)
		}
	})

	s.mu.Lock()
	s.hosts[i] = h
	s.mu.Unlock()
	return nil
}

// writeHost puts info and status in one transaction.
func (s *Sim) writeHost(ctx context.Context, h *simHost) error {
	status, err := s.status(h)
	if err != nil {
		return err
	}
	ks := s.cfg.Keyspace
	_, err = s.cfg.Client.Txn(ctx).Then(
		clientv3.OpPut(ks.HostInfo(h.id), h.info),
		clientv3.OpPut(ks.HostStatus(h.id), status, clientv3.WithLease(h.lease)),
	).Commit()
	if err != nil {
		return fmt.Errorf("register host %s: %w", h.id, err)
	}
	s.writes.Add(1)
	return nil
}

func (s *Sim) status(h *simHost) (string, error) {
	st := keyspace.HostStatus{
		InstanceID: h.id + "-1", HeartbeatAt: time.Now().UTC(),
		CPUPercent: 3, UsedMemory: 8 << 30, AvailableMemory: simMemory - 8<<30,
	}
	used := int64(0)
	for g := range simGPUs {
		st.GPUs = append(st.GPUs, keyspace.GPUStatus{
			Index: g, UUID: fmt.Sprintf("GPU-%s-%d", h.id, g),
			MemoryUsed: &used, Health: keyspace.GPUHealthy,
		})
	}
	return keyspace.Encode(st)
}

// refreshStatus rewrites each live host's status once per StatusInterval,
// spread evenly over the interval from a random start.
func (s *Sim) refreshStatus() {
	const tick = 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	n := len(s.hosts)
	perTick := float64(n) * float64(tick) / float64(s.cfg.StatusInterval)
	pos, carry := rand.IntN(n), 0.0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		carry += perTick
		batch := int(carry)
		carry -= float64(batch)
		s.writeStatuses(pos, batch)
		pos = (pos + batch) % n
	}
}

func (s *Sim) writeStatuses(from, count int) {
	sem := make(chan struct{}, s.cfg.Parallel)
	var wg sync.WaitGroup
	for k := range count {
		s.mu.Lock()
		h := s.hosts[(from+k)%len(s.hosts)]
		alive := h != nil && h.stop != nil
		s.mu.Unlock()
		if !alive {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.writeStatus(h)
		})
	}
	wg.Wait()
}

func (s *Sim) writeStatus(h *simHost) {
	status, err := s.status(h)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	// A host whose keepalive was stopped may see its lease expire at
	// any moment; its status write then fails, as a dead agent's would.
	_, err = s.cfg.Client.Put(ctx, s.cfg.Keyspace.HostStatus(h.id), status,
		clientv3.WithLease(h.lease))
	if err == nil {
		s.writes.Add(1)
	}
}

// StopKeepAlive stops renewing the leases of hosts from, from+1, …,
// from+count-1 and returns the time it did so. Their status keys vanish
// when the leases expire, up to TTL later.
func (s *Sim) StopKeepAlive(from, count int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := from; i < from+count; i++ {
		h := s.hosts[i]
		h.stop()
		h.stop = nil
	}
	return time.Now()
}

// LeaseEnd returns when host i's lease runs out if it is not renewed
// again: its last renewal as this process saw it, plus the TTL.
func (s *Sim) LeaseEnd(i int) time.Time {
	s.mu.Lock()
	h := s.hosts[i]
	s.mu.Unlock()
	return time.Unix(0, h.renewed.Load()).Add(s.cfg.TTL)
}

// KeepAlives returns the number of keepalive responses received.
func (s *Sim) KeepAlives() int64 { return s.keepAlives.Load() }

// Writes returns the number of registrations and status writes.
func (s *Sim) Writes() int64 { return s.writes.Load() }

// Close stops every keepalive and revokes nothing: leases expire on their
// own, or vanish with the etcd member.
func (s *Sim) Close() {
	s.cancel()
	s.wg.Wait()
}

// Revoke revokes every host's lease, so the status keys vanish at once.
// Leases that already expired are skipped.
func (s *Sim) Revoke(ctx context.Context) error {
	s.mu.Lock()
	hosts := append([]*simHost(nil), s.hosts...)
	s.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		if h == nil {
			continue
		}
		_, err := s.cfg.Client.Revoke(ctx, h.lease)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("revoke lease of host %s: %w", h.id, err))
		}
	}
	return errors.Join(errs...)
}
