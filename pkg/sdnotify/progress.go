package sdnotify

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrStalled is returned by Progress.Check when the loop made no progress
// for longer than allowed.
var ErrStalled = errors.New("main loop stalled")

// Progress records when a loop last made progress, so that a watchdog
// check can tell a stuck loop from a busy one. Its methods are safe for
// concurrent use.
type Progress struct {
	now func() time.Time
	// last is the time of the last Mark in Unix nanoseconds.
	last atomic.Int64
}

// NewProgress returns a Progress marked at now(). A nil now uses
// time.Now.
func NewProgress(now func() time.Time) *Progress {
	if now == nil {
		now = time.Now
	}
	p := &Progress{now: now}
	p.Mark()
	return p
}

// Mark records progress now.
func (p *Progress) Mark() {
	p.last.Store(p.now().UnixNano())
}

// Check returns an error wrapping ErrStalled when the last Mark is more
// than maxGap ago.
func (p *Progress) Check(maxGap time.Duration) error {
	gap := p.now().Sub(time.Unix(0, p.last.Load()))
	if gap > maxGap {
		return fmt.Errorf("%w: no progress for %s (limit %s)",
			ErrStalled, gap.Round(time.Millisecond), maxGap)
	}
	return nil
}
