package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// releaseTimeout bounds the release that KeepAlive sends after its context
// ended.
const releaseTimeout = 10 * time.Second

// minDerivedInterval keeps a renewal interval derived from a short TTL from
// turning into a busy loop.
const minDerivedInterval = 500 * time.Millisecond

// KeepAlive renews allocation allocID every interval until ctx ends, then
// releases it with a fresh context bounded by 10 s. An interval of 0 means
// a third of the allocation's TTL, which KeepAlive reads first. An
// allocation without a TTL is then not renewed, only released at the end.
//
// KeepAlive releases the allocation before it returns in every case, so
// that the caller can hand over the allocation's lifetime entirely. A
// negative interval is an ErrInvalid error that ends KeepAlive at once,
// after the release. A renewal that fails with ErrUnavailable (the
// coordinator or etcd is briefly unreachable) is tried again at the next
// tick. Any other renewal error is fatal: KeepAlive stops renewing, still
// releases, and returns that error. Otherwise it returns the release
// error, if any; a release that finds the allocation gone (ErrNotFound)
// counts as success. The end of ctx itself is not an error.
func (c *Client) KeepAlive(ctx context.Context, allocID string, interval time.Duration) error {
	var renewErr error
	if interval < 0 {
		renewErr = fmt.Errorf("%w: keepalive interval %s is negative; use 0 for a third "+
			"of the allocation's TTL, or a positive interval", ErrInvalid, interval)
	}
	if renewErr == nil && interval == 0 {
		interval, renewErr = c.renewInterval(ctx, allocID)
		if ctx.Err() != nil {
			renewErr = nil
		}
	}
	if renewErr == nil {
		renewErr = c.renewUntilDone(ctx, allocID, interval)
	}

	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_, relErr := c.Release(relCtx, allocID)
	if relErr != nil && errors.Is(relErr, ErrNotFound) {
		relErr = nil
	}

	if renewErr != nil {
		return renewErr
	}
	if relErr != nil {
		return fmt.Errorf("release allocation %q: %w", allocID, relErr)
	}
	return nil
}

// renewInterval returns a third of the allocation's TTL, or 0 when it has
// none.
func (c *Client) renewInterval(ctx context.Context, allocID string) (time.Duration, error) {
	alloc, err := c.GetAllocation(ctx, allocID)
	if err != nil {
		return 0, fmt.Errorf("read allocation %q for its TTL: %w", allocID, err)
	}
	if alloc.TTLSeconds <= 0 {
		return 0, nil
	}
	return max(time.Duration(alloc.TTLSeconds)*time.Second/3, minDerivedInterval), nil
}

// renewUntilDone renews every interval (never when interval is 0) until
// ctx ends or a renewal fails for a reason other than ErrUnavailable.
func (c *Client) renewUntilDone(ctx context.Context, allocID string, interval time.Duration) error {
	if interval == 0 {
		<-ctx.Done()
		return nil
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		_, err := c.Renew(ctx, allocID)
		switch {
		case err == nil, ctx.Err() != nil, errors.Is(err, ErrUnavailable):
			continue
		default:
			return fmt.Errorf("renew allocation %q: %w", allocID, err)
		}
	}
}
