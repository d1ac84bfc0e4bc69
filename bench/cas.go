package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LoadResult is one timed run of a closed-loop load.
type LoadResult struct {
	Ops       int64
	Failures  int64
	Elapsed   time.Duration
	Latencies []time.Duration
}

// Rate returns operations per second.
func (r LoadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// runLoad runs op in workers goroutines until d has passed and returns
// the successful operations and their latencies. op returns false for an
// operation that completed without success, which counts as a failure; an
// error stops the run.
func runLoad(ctx context.Context, workers int, d time.Duration,
	op func(ctx context.Context, worker int) (bool, error)) (LoadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var ops, failures atomic.Int64
	lat := make([][]time.Duration, workers)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				ok, err := op(ctx, w)
				if err != nil {
					cancel(err)
					return
				}
				if !ok {
					failures.Add(1)
					continue
				}
				ops.Add(1)
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	r := LoadResult{Ops: ops.Load(), Failures: failures.Load(), Elapsed: time.Since(start)}
	if err := context.Cause(ctx); err != nil {
		return r, err
	}
	for _, l := range lat {
		r.Latencies = append(r.Latencies, l...)
	}
	return r, nil
}

// casKeys holds one key per worker and its last known ModRevision.
type casKeys struct {
	keys []string
	revs []int64
}

// prepareCAS writes one key per worker under prefix.
func prepareCAS(ctx context.Context, cli *clientv3.Client, prefix string,
	workers int) (*casKeys, error) {
	k := &casKeys{keys: make([]string, workers), revs: make([]int64, workers)}
	for i := range workers {
		k.keys[i] = fmt.Sprintf("%s/%04d", prefix, i)
		resp, err := cli.Put(ctx, k.keys[i], "0")
		if err != nil {
			return nil, fmt.Errorf("write CAS key %s: %w", k.keys[i], err)
		}
		k.revs[i] = resp.Header.Revision
	}
	return k, nil
}

// RunCAS runs compare-and-swap transactions (If ModRevision == last Then
// Put) on one key per worker for d. Each worker owns its key, so every
// transaction succeeds unless another writer touched the key.
func RunCAS(ctx context.Context, cli *clientv3.Client, prefix string,
	workers int, d time.Duration) (LoadResult, error) {
	keys, err := prepareCAS(ctx, cli, prefix, workers)
	if err != nil {
		return LoadResult{}, err
	}
	value := make([]byte, 512)
	for i := range value {
		value[i] = 'x'
	}
	return runLoad(ctx, workers, d, func(ctx context.Context, w int) (bool, error) {
		key := keys.keys[w]
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", keys.revs[w])).
			Then(clientv3.OpPut(key, string(value))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return false, fmt.Errorf("CAS on %s: %w", key, err)
		}
		if !resp.Succeeded {
			keys.revs[w] = resp.Responses[0].GetResponseRange().Kvs[0].ModRevision
			return false, nil
		}
		keys.revs[w] = resp.Header.Revision
		return true, nil
	})
}
