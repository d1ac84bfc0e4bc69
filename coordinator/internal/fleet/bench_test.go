package fleet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// benchRequest is the request of make bench's allocation runs.
var benchRequest = api.AllocationRequest{CPU: 1, Memory: gib, GPU: 1}

// BenchmarkAllocateRelease allocates and releases one GPU per iteration
// on 100 hosts of 8 GPUs in a real embedded etcd. The embedded member
// runs in the benchmark's process, so B/op and allocs/op include its
// share of the work.
func BenchmarkAllocateRelease(b *testing.B) {
	f := startBenchFleet(b, 100)
	ctx := context.Background()

	b.ReportAllocs()
	for b.Loop() {
		a, _, err := f.Allocate(ctx, benchRequest)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Release(ctx, a.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelect runs Select, the placement choice of Allocate without
// its etcd calls, over a view filled in memory, for every strategy.
func BenchmarkSelect(b *testing.B) {
	for _, hosts := range []int{100, 1000} {
		for _, strategy := range api.Strategies {
			name := fmt.Sprintf("%s/hosts=%d", strategy, hosts)
			b.Run(name, func(b *testing.B) {
				f := viewOnlyFleet(b, hosts)
				req := benchRequest
				req.Strategy = strategy
				ctx := context.Background()

				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.Select(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchLogger returns an Info-level logger that discards its output, so
// the benchmarks include the cost of building log records.
func benchLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startBenchFleet starts etcd and a running Fleet, registers n hosts of
// 16 CPUs, 64 GiB and 8 GPUs, and waits until the Fleet reports them all
// healthy.
func startBenchFleet(b *testing.B, n int) *Fleet {
	b.Helper()
	cluster := etcdtest.Start(b)
	ks, err := keyspace.New("/rg")
	if err != nil {
		b.Fatal(err)
	}
	f, err := New(Config{Client: cluster.Client, Keyspace: ks,
		Logger: benchLogger(), CallTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})

	ctx := etcdtest.Ctx(b, 30*time.Second)
	lease, err := cluster.Client.Grant(ctx, 600)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		info := hostDoc(fmt.Sprintf("h%04d", i), 16, 64, 8)
		_, err := cluster.Client.Txn(ctx).Then(
			clientv3.OpPut(ks.HostInfo(info.ID), mustEncode(b, info)),
			clientv3.OpPut(ks.HostStatus(info.ID), mustEncode(b, statusDoc(info)),
				clientv3.WithLease(lease.ID)),
		).Commit()
		if err != nil {
			b.Fatal(err)
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for healthyHosts(f) < n {
		if time.Now().After(deadline) {
			b.Fatalf("fleet reports %d of %d hosts healthy after 30s",
				healthyHosts(f), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

// healthyHosts counts the hosts that the Fleet reports healthy.
func healthyHosts(f *Fleet) int {
	hosts, err := f.ListHosts(context.Background())
	if err != nil {
		return 0
	}
	n := 0
	for _, h := range hosts {
		if h.Health == api.HealthHealthy {
			n++
		}
	}
	return n
}

// viewOnlyFleet returns a ready Fleet whose view holds n hosts of 16
// CPUs, 64 GiB and 8 GPUs, without etcd. Host i holds i%5 allocations
// of 2 CPUs, 8 GiB and 1 GPU, so the strategies have usage to compare.
// Only methods that read the view alone, such as Select, work on it.
func viewOnlyFleet(tb testing.TB, n int) *Fleet {
	tb.Helper()
	f := emptyViewFleet(tb)
	for i := range n {
		info := hostDoc(fmt.Sprintf("h%05d", i), 16, 64, 8)
		putViewHost(tb, f, info, ledgerHolding(info, i%5, 2, 8*gib))
	}
	return f
}

// emptyViewFleet returns a ready Fleet with an empty view and a client
// that is connected to nothing.
func emptyViewFleet(tb testing.TB) *Fleet {
	tb.Helper()
	ks, err := keyspace.New("/rg")
	if err != nil {
		tb.Fatal(err)
	}
	client := clientv3.NewCtxClient(context.Background())
	tb.Cleanup(func() { client.Close() })
	f, err := New(Config{Client: client, Keyspace: ks, Logger: benchLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	f.ready = true
	return f
}

// ledgerHolding returns a ledger with n allocations of cpu cores, memory
// bytes and one GPU each, on the first n GPUs of info.
func ledgerHolding(
	info *keyspace.HostInfo, n, cpu int, memory int64,
) *keyspace.Ledger {
	l := &keyspace.Ledger{Allocations: map[string]keyspace.LedgerEntry{}}
	for j := range n {
		id := fmt.Sprintf("alloc-%s-%d", info.ID, j)
		l.Allocations[id] = keyspace.LedgerEntry{CPU: cpu, Memory: memory,
			GPUs: []string{info.GPUs[j].UUID}}
	}
	return l
}

// putViewHost applies info, an all-healthy status with a lease and ledger
// to f's view, each at the next revision.
func putViewHost(
	tb testing.TB, f *Fleet, info *keyspace.HostInfo, ledger *keyspace.Ledger,
) {
	tb.Helper()
	put := func(key, value string, lease int64) {
		f.view.rev++
		kv := &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value),
			CreateRevision: f.view.rev, ModRevision: f.view.rev, Lease: lease}
		if _, err := f.view.put(kv, time.Now()); err != nil {
			tb.Fatal(err)
		}
	}
	put(f.ks.HostInfo(info.ID), mustEncode(tb, info), 0)
	put(f.ks.HostStatus(info.ID), mustEncode(tb, statusDoc(info)), 1)
	put(f.ks.HostLedger(info.ID), mustEncode(tb, ledger), 0)
}

func mustEncode(b testing.TB, v any) string {
	b.Helper()
	s, err := keyspace.Encode(v)
	if err != nil {
		b.Fatal(err)
	}
	return s
}
