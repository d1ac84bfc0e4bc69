package heartbeat

import (
	"math/rand/v2"
	"time"
)

// Retry backoff bounds. The first retry comes after RetryBase on average
// and later ones double up to the cap, which is the lease TTL but at most
// MaxRetryBackoff: a host must not stay unregistered much longer than a
// TTL after etcd is back.
const (
	RetryBase       = 200 * time.Millisecond
	MaxRetryBackoff = 5 * time.Second
)

// backoff computes retry delays with "equal jitter": half of the capped
// exponential delay is fixed and the other half random, so agents that lost
// etcd at the same moment do not retry in lockstep.
type backoff struct {
	base, max time.Duration
	// random returns a number in [0, 1).
	random func() float64
}

func newBackoff(ttl time.Duration, random func() float64) backoff {
	if random == nil {
		random = rand.Float64
	}
	return backoff{
		base: RetryBase, max: min(ttl, MaxRetryBackoff), random: random,
	}
}

// delay returns the pause before retry number attempt, counted from 0.
func (b backoff) delay(attempt int) time.Duration {
	d := b.max
	if attempt < 30 && b.base<<attempt < b.max {
		d = b.base << attempt
	}
	half := d / 2
	return half + time.Duration(b.random()*float64(half))
}
