package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// writeOutage counts the status writes that failed since the last one that
// succeeded, so that the agent can log once when etcd accepts writes
// again. Only Run's goroutine uses it.
type writeOutage struct {
	// since is when the first of the failed writes happened.
	since  time.Time
	failed int
}

// fail records a failed status write, or a failed registration during an
// outage.
func (o *writeOutage) fail(now time.Time) {
	if o.failed == 0 {
		o.since = now
	}
	o.failed++
}

// active reports whether a status write has failed since the last success.
func (o *writeOutage) active() bool { return o.failed > 0 }

// end records a successful write. It returns how long writes failed and
// how many attempts failed, and ok false when none had failed.
func (o *writeOutage) end(now time.Time) (length time.Duration, failed int, ok bool) {
	if o.failed == 0 {
		return 0, 0, false
	}
	length, failed = now.Sub(o.since), o.failed
	*o = writeOutage{}
	return length, failed, true
}

// statusWritten ends an outage of status writes and logs its end.
func (a *Agent) statusWritten() {
	length, failed, ok := a.outage.end(a.cfg.Now())
	if !ok {
		return
	}
	a.log.Info("status writes succeed again after etcd errors",
		"outage", length.Round(time.Millisecond), "failed_attempts", failed)
}

// explainUnreachable adds to err, when it means that no etcd endpoint
// responded in time, the endpoints that were tried. Before the first
// registration it also suggests checking the endpoint setting, because a
// wrong --etcd-endpoints is then the likely cause.
func (a *Agent) explainUnreachable(err error) error {
	if !isUnreachable(err) {
		return err
	}
	endpoints := strings.Join(a.cli.Endpoints(), ", ")
	if a.registered {
		return fmt.Errorf("cannot reach etcd at %s: %w", endpoints, err)
	}
	return fmt.Errorf("cannot reach etcd at %s: check that etcd runs there "+
		"and that --etcd-endpoints (or REMOTEGPU_ETCD_ENDPOINTS) lists it: %w",
		endpoints, err)
}

// isUnreachable reports whether err is an etcd call that timed out or
// found no endpoint available. clientv3 waits for a connection until the
// call's deadline, so an unreachable etcd usually shows up as
// context.DeadlineExceeded.
func isUnreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}
