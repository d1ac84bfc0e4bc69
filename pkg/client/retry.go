package client

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// retryPolicy is jittered exponential backoff.
type retryPolicy struct {
	maxAttempts int
	base        time.Duration
	max         time.Duration
}

// delay returns the pause after the given failed attempt (1-based): a
// random duration in [ceiling/2, ceiling], where ceiling is base × 2^(n-1)
// capped at max. A server's Retry-After, when longer, wins up to max.
func (p retryPolicy) delay(attempt int, after time.Duration) time.Duration {
	ceiling := p.base
	for i := 1; i < attempt && ceiling < p.max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.max)
	d := ceiling/2 + rand.N(ceiling/2+1)
	if after > d {
		d = min(after, p.max)
	}
	return d
}

// retryAfter reads a Retry-After header given in seconds; 0 when absent or
// in another form.
func retryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// sleep waits for d or until ctx ends, returning ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
