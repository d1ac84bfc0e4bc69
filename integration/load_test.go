package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

// retryPause is the pause between two tries of a call whose outcome is
// unknown.
const retryPause = 100 * time.Millisecond

// allocation is the outcome of allocate.
type allocation struct {
	api.Allocation
	// replayed is set when the key matched an allocation committed by an
	// earlier try, whose response was lost.
	replayed bool
	// tries is the number of requests sent; retryErr is the error of the
	// last try whose outcome was unknown.
	tries    int
	retryErr error
}

// allocate places req under the idempotency key and, while the outcome is
// unknown (a transport error, a timeout or a 5xx), retries with the
// same key, moving to the next client each time, until deadline. A nil
// error means a coordinator acknowledged the allocation.
func allocate(ctx context.Context, clients []*client.Client,
	req api.AllocationRequest, key string,
	deadline time.Time) (allocation, error) {
	req.IdempotencyKey = key
	var retryErr error
	for try := 0; ; try++ {
		a, created, err := clients[try%len(clients)].Allocate(ctx, req)
		if err == nil {
			return allocation{Allocation: a, replayed: !created,
				tries: try + 1, retryErr: retryErr}, nil
		}
		if !outcomeUnknown(err) || time.Now().After(deadline) ||
			ctx.Err() != nil {
			return allocation{tries: try + 1, retryErr: retryErr}, err
		}
		retryErr = err
		time.Sleep(retryPause)
	}
}

// release frees an allocation, asking the next client again until
// deadline while the outcome is unknown. Release is idempotent, so asking
// twice is harmless.
func release(ctx context.Context, clients []*client.Client, id string,
	deadline time.Time) error {
	for try := 0; ; try++ {
		_, err := clients[try%len(clients)].Release(ctx, id)
		if err == nil || !outcomeUnknown(err) ||
			time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(retryPause)
	}
}

// mustAllocate allocates req through c and fails the test on an error.
func mustAllocate(t *testing.T, c *coordinator, req api.AllocationRequest,
	key string) api.Allocation {
	t.Helper()
	ctx := harness.Ctx(t, 20*time.Second)
	a, err := allocate(ctx, []*client.Client{c.api}, req, key,
		time.Now().Add(15*time.Second))
	if err != nil {
		t.Fatalf("allocate %+v: %v", req, err)
	}
	return a.Allocation
}

// Settings of the load generator.
const (
	// loadHeld is how many allocations a worker holds before it releases
	// its oldest one.
	loadHeld = 2
	// loadCallDeadline bounds the retries of one allocation or release
	// whose outcome stays unknown.
	loadCallDeadline = 20 * time.Second
)

// attempt is one allocation a load worker made, acknowledged or not.
type attempt struct {
	start, end time.Time
	client     int // index of the first client tried
	ok         bool
	replayed   bool
	tries      int
}

// load runs workers that allocate one GPU at a time through coordinators
// and release their oldest allocation once they hold more than loadHeld.
// Every acknowledged allocation and every acknowledged release goes into
// acks.
type load struct {
	t       *testing.T
	clients []*client.Client
	acks    *harness.AckSet
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// mu guards the fields below.
	mu        sync.Mutex
	attempts  []attempt
	errs      map[string]int // error text of failed attempts, by count
	unsettled []string       // releases whose outcome stayed unknown
}

// startLoad starts perClient workers for each client. A worker of client
// i moves to the other clients only while an outcome is unknown.
func startLoad(t *testing.T, name string, clients []*client.Client,
	perClient int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{
		t:       t,
		clients: clients,
		acks:    harness.NewAckSet(),
		cancel:  cancel,
		errs:    make(map[string]int),
	}
	for i := range clients {
		for w := range perClient {
			l.wg.Add(1)
			go l.work(ctx, i, fmt.Sprintf("%s-c%d-w%d", name, i, w))
		}
	}
	t.Cleanup(l.stop)
	return l
}

// rotated returns the clients starting with client i.
func (l *load) rotated(i int) []*client.Client {
	return append(slices.Clone(l.clients[i:]), l.clients[:i]...)
}

func (l *load) work(ctx context.Context, first int, name string) {
	defer l.wg.Done()
	clients := l.rotated(first)
	var held []string
	for n := 0; ctx.Err() == nil; n++ {
		start := time.Now()
		callCtx, cancel := context.WithTimeout(context.Background(),
			loadCallDeadline+apiTimeout)
		a, err := allocate(callCtx, clients, gpuRequest(1, ""),
			fmt.Sprintf("%s-%d", name, n), start.Add(loadCallDeadline))
		cancel()
		l.record(attempt{start: start, end: time.Now(), client: first,
			ok: err == nil, replayed: a.replayed, tries: a.tries}, err,
			a.retryErr)
		if err != nil {
			time.Sleep(retryPause)
			continue
		}
		l.acks.Ack(a.ID)
		held = append(held, a.ID)
		if len(held) > loadHeld {
			l.release(clients, held[0])
			held = held[1:]
		}
	}
}

// release frees id and records the acknowledged release; a release whose
// outcome stays unknown is kept for settle.
func (l *load) release(clients []*client.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(),
		loadCallDeadline+apiTimeout)
	defer cancel()
	err := release(ctx, clients, id, time.Now().Add(loadCallDeadline))
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs["release: "+err.Error()]++
		l.unsettled = append(l.unsettled, id)
		return
	}
	l.acks.Release(id)
}

// record keeps an attempt with its final error and the error that made
// it ask again, either of which may be nil.
func (l *load) record(a attempt, err, retryErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts = append(l.attempts, a)
	if err != nil {
		l.errs["failed: "+err.Error()]++
	}
	if retryErr != nil {
		l.errs["retried after: "+retryErr.Error()]++
	}
}

// stop ends the workers and waits for them. A second call does nothing.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// settle stops the load, then retries every release whose outcome stayed
// unknown through clients, so that acks is exact. It fails the test when
// a release still fails.
func (l *load) settle(clients ...*client.Client) {
	l.t.Helper()
	l.stop()
	l.mu.Lock()
	ids := l.unsettled
	l.unsettled = nil
	l.mu.Unlock()
	for _, id := range ids {
		ctx := harness.Ctx(l.t, loadCallDeadline+apiTimeout)
		if err := release(ctx, clients, id,
			time.Now().Add(loadCallDeadline)); err != nil {
			l.t.Fatalf("release %s after the load: %v", id, err)
		}
		l.acks.Release(id)
	}
}

// firstSuccessAfter returns the end of the first acknowledged allocation
// that started after t0, if any.
func (l *load) firstSuccessAfter(t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, a := range l.attempts {
		if a.ok && a.start.After(t0) && (first.IsZero() || a.end.Before(first)) {
			first = a.end
		}
	}
	return first, !first.IsZero()
}

// successesAfter counts acknowledged allocations that started after t0
// through a worker of client i, or of any client when i is negative.
func (l *load) successesAfter(t0 time.Time, i int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.attempts {
		if a.ok && a.start.After(t0) && (i < 0 || a.client == i) {
			n++
		}
	}
	return n
}

// loadSummary counts a load's attempts.
type loadSummary struct {
	failed   int // not acknowledged
	replayed int // acknowledged by a replay of the idempotency key
	retried  int // needed more than one request
	// slowest is the longest time to an acknowledgement.
	slowest time.Duration
	errs    map[string]int
}

func (l *load) summary() loadSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := loadSummary{errs: maps.Clone(l.errs)}
	for _, a := range l.attempts {
		if !a.ok {
			s.failed++
			continue
		}
		if a.replayed {
			s.replayed++
		}
		if a.tries > 1 {
			s.retried++
		}
		s.slowest = max(s.slowest, a.end.Sub(a.start))
	}
	return s
}

// report records the load's counts in fig and logs the errors.
func (l *load) report(fig *harness.Figures) {
	l.t.Helper()
	s := l.summary()
	fig.Count(harness.FigureAcknowledged, l.acks.Len())
	fig.Count("released", len(l.acks.Released()))
	fig.Count("allocations_failed", s.failed)
	fig.Count("allocations_retried", s.retried)
	fig.Count("replayed_by_key", s.replayed)
	fig.Duration("slowest_allocation", s.slowest)
	for msg, n := range s.errs {
		l.t.Logf("load error x%d: %s", n, msg)
	}
}
