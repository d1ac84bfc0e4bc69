package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// hostView is the part of api.Host that comes from etcd's stored state,
// without the agent's live measurements and the coordinator's clock.
type hostView struct {
	ID          string
	Name        string
	Status      string // active or draining
	Live        bool   // the status key exists
	TotalCPU    int
	UsedCPU     int
	TotalMemory int64
	UsedMemory  int64
	TotalGPU    int
	UsedGPU     int
	// GPUHolders maps each GPU UUID to the allocation holding it, or "".
	GPUHolders map[string]string
}

// allocView is the part of an allocation that etcd stores.
type allocView struct {
	ID     string
	HostID string
	State  string
	CPU    int
	Memory int64
	GPUs   []string // UUIDs, sorted
}

// fleetView is a whole fleet as hostView and allocView values, keyed by
// ID.
type fleetView struct {
	Hosts       map[string]hostView
	Allocations map[string]allocView
}

// coordinatorView reads the fleet through the API. It also returns the
// full host documents, for comparisons of health.
func coordinatorView(ctx context.Context,
	c *client.Client) (fleetView, []api.Host, error) {
	hosts, err := c.ListHosts(ctx)
	if err != nil {
		return fleetView{}, nil, fmt.Errorf("list hosts: %w", err)
	}
	allocs, err := c.ListAllocations(ctx, client.AllocationFilter{})
	if err != nil {
		return fleetView{}, nil, fmt.Errorf("list allocations: %w", err)
	}
	v := fleetView{
		Hosts:       make(map[string]hostView, len(hosts)),
		Allocations: make(map[string]allocView, len(allocs)),
	}
	for _, h := range hosts {
		hv := hostView{
			ID: h.ID, Name: h.Name, Status: h.Status,
			Live:     h.Health == api.HealthHealthy,
			TotalCPU: h.TotalCPU, UsedCPU: h.UsedCPU,
			TotalMemory: h.TotalMemory, UsedMemory: h.UsedMemory,
			TotalGPU: h.TotalGPU, UsedGPU: h.UsedGPU,
			GPUHolders: make(map[string]string, len(h.GPUs)),
		}
		for _, g := range h.GPUs {
			hv.GPUHolders[g.UUID] = g.AllocationID
		}
		v.Hosts[h.ID] = hv
	}
	for _, a := range allocs {
		av := allocView{ID: a.ID, HostID: a.HostID, State: a.State,
			CPU: a.CPU, Memory: a.Memory}
		for _, g := range a.GPUs {
			av.GPUs = append(av.GPUs, g.UUID)
		}
		slices.Sort(av.GPUs)
		v.Allocations[a.ID] = av
	}
	return v, hosts, nil
}

// etcdView reads the fleet straight from etcd in one linearizable read.
func etcdView(ctx context.Context, cli *clientv3.Client,
	ks keyspace.Keyspace) (fleetView, error) {
	resp, err := cli.Get(ctx, ks.Root(), clientv3.WithPrefix())
	if err != nil {
		return fleetView{}, fmt.Errorf("read %s: %w", ks.Root(), err)
	}
	infos := make(map[string]*keyspace.HostInfo)
	live := make(map[string]bool)
	ledgers := make(map[string]*keyspace.Ledger)
	v := fleetView{Allocations: make(map[string]allocView)}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		pk, err := ks.ParseKey(key)
		if err != nil {
			continue
		}
		switch pk.Kind {
		case keyspace.KindHostInfo:
			infos[pk.ID], err = keyspace.DecodeHostInfo(key, kv.Value)
		case keyspace.KindHostStatus:
			live[pk.ID] = true
		case keyspace.KindHostLedger:
			ledgers[pk.ID], err = keyspace.DecodeLedger(key, kv.Value)
		case keyspace.KindAllocation:
			var a *keyspace.Allocation
			a, err = keyspace.DecodeAllocation(key, kv.Value)
			if err == nil {
				v.Allocations[a.ID] = recordView(a)
			}
		}
		if err != nil {
			return fleetView{}, err
		}
	}
	v.Hosts = make(map[string]hostView, len(infos))
	for id, info := range infos {
		v.Hosts[id] = storedHostView(info, ledgers[id], live[id])
	}
	return v, nil
}

func recordView(a *keyspace.Allocation) allocView {
	entry := a.LedgerEntry()
	gpus := slices.Clone(entry.GPUs)
	slices.Sort(gpus)
	return allocView{ID: a.ID, HostID: a.HostID, State: a.State,
		CPU: entry.CPU, Memory: entry.Memory, GPUs: gpus}
}

func storedHostView(info *keyspace.HostInfo, l *keyspace.Ledger,
	live bool) hostView {
	hv := hostView{
		ID: info.ID, Name: info.Name, Status: "active", Live: live,
		TotalCPU: info.TotalCPU, TotalMemory: info.TotalMemory,
		TotalGPU:   len(info.GPUs),
		GPUHolders: make(map[string]string, len(info.GPUs)),
	}
	for _, g := range info.GPUs {
		hv.GPUHolders[g.UUID] = ""
	}
	if l == nil {
		return hv
	}
	if l.Draining {
		hv.Status = "draining"
	}
	hv.UsedCPU, hv.UsedMemory, hv.UsedGPU = l.Totals()
	for uuid, id := range l.GPUsInUse() {
		hv.GPUHolders[uuid] = id
	}
	return hv
}

// requireViewMatchesEtcd polls until the coordinator's view equals a
// direct read of etcd and fails with the difference after timeout. It
// returns the time that took.
func (e *env) requireViewMatchesEtcd(c *coordinator,
	timeout time.Duration) time.Duration {
	e.t.Helper()
	var got, want fleetView
	var lastErr error
	d, ok := pollFor(timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		got, _, lastErr = coordinatorView(ctx, c.api)
		if lastErr != nil {
			return false
		}
		want, lastErr = etcdView(ctx, e.cluster.Client(), e.ks)
		return lastErr == nil && viewsEqual(got, want)
	})
	if !ok {
		require.NoError(e.t, lastErr)
		require.Equal(e.t, want, got,
			"coordinator %s view differs from etcd after %s", c.url, timeout)
	}
	e.t.Logf("coordinator %s matches etcd: %d hosts, %d allocations",
		c.url, len(got.Hosts), len(got.Allocations))
	return d
}

func viewsEqual(a, b fleetView) bool {
	return maps.EqualFunc(a.Hosts, b.Hosts, hostsEqual) &&
		maps.EqualFunc(a.Allocations, b.Allocations, allocsEqual)
}

func hostsEqual(a, b hostView) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Status == b.Status &&
		a.Live == b.Live && a.TotalCPU == b.TotalCPU &&
		a.UsedCPU == b.UsedCPU && a.TotalMemory == b.TotalMemory &&
		a.UsedMemory == b.UsedMemory && a.TotalGPU == b.TotalGPU &&
		a.UsedGPU == b.UsedGPU && maps.Equal(a.GPUHolders, b.GPUHolders)
}

func allocsEqual(a, b allocView) bool {
	return a.ID == b.ID && a.HostID == b.HostID && a.State == b.State &&
		a.CPU == b.CPU && a.Memory == b.Memory && slices.Equal(a.GPUs, b.GPUs)
}

// pollFor calls cond every pollInterval until it returns true or timeout
// passes, and returns the time taken and whether cond held.
func pollFor(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(pollInterval)
	}
}

// apiSnapshot is a coordinator's responses with the fields that change on
// their own removed: the agents' measurements and heartbeat times.
type apiSnapshot struct {
	Hosts       []api.Host
	Allocations []api.Allocation
}

// snapshotAPI reads every host and allocation from c.
func snapshotAPI(t *testing.T, c *coordinator) apiSnapshot {
	t.Helper()
	ctx := harness.Ctx(t, 2*apiTimeout)
	hosts, err := c.api.ListHosts(ctx)
	require.NoError(t, err)
	allocs, err := c.api.ListAllocations(ctx, client.AllocationFilter{})
	require.NoError(t, err)
	for i := range hosts {
		h := &hosts[i]
		h.LastHeartbeat = nil
		h.CPUPercent = 0
		h.MemoryInUse = 0
		for j := range h.GPUs {
			g := &h.GPUs[j]
			g.MemoryUsed = nil
			g.UtilizationGPUPercent = nil
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].ID < hosts[j].ID })
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].ID < allocs[j].ID })
	return apiSnapshot{Hosts: hosts, Allocations: allocs}
}
