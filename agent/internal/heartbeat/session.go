package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Errors that end a session and make the agent register again.
var (
	// ErrLeaseLost means the keepalive stopped: the lease expired, was
	// revoked, or etcd was unreachable for a whole TTL.
	ErrLeaseLost = errors.New("lease lost")
	// ErrStatusLost means the status key is gone or attached to another
	// lease.
	ErrStatusLost = errors.New("status key no longer attached to this agent's lease")
)

// session is one registration: a lease, its keepalive and the documents
// last written under it.
type session struct {
	lease clientv3.LeaseID
	info  keyspace.HostInfo

	// stopKeepAlive ends the keepalive; lost is closed by the drain
	// goroutine when the keepalive channel closes; wg waits for it.
	stopKeepAlive context.CancelFunc
	lost          chan struct{}
	wg            sync.WaitGroup

	// lastStatus and lastWrite describe the last status written; only
	// Run's goroutine uses them.
	lastStatus keyspace.HostStatus
	lastWrite  time.Time
}

// startSession starts the lease keepalive and a goroutine that drains its
// channel, as clientv3 requires.
func (a *Agent) startSession(ctx context.Context, lease clientv3.LeaseID,
	info keyspace.HostInfo, status keyspace.HostStatus) (*session, error) {
	kctx, cancel := context.WithCancel(ctx)
	ch, err := a.cli.KeepAlive(kctx, lease)
	if err != nil {
		cancel()
		a.obs.EtcdError("keepalive", err)
		return nil, fmt.Errorf("keep lease %x alive: %w", int64(lease), err)
	}

	s := &session{
		lease:         lease,
		info:          info,
		stopKeepAlive: cancel,
		lost:          make(chan struct{}),
		lastStatus:    status,
		lastWrite:     a.cfg.Now(),
	}
	s.wg.Go(func() {
		defer close(s.lost)
		for range ch {
		}
	})
	return s, nil
}

// close stops the keepalive and waits for the drain goroutine. The lease
// itself stays until it expires or is revoked.
func (s *session) close() {
	s.stopKeepAlive()
	s.wg.Wait()
}

// serve samples the host every interval and writes the status when it
// changed or the maximum interval passed. It returns ctx's error on
// shutdown, or why the registration was lost.
func (a *Agent) serve(ctx context.Context, s *session) error {
	ticker := time.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	var lastSampleErr string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.lost:
			return fmt.Errorf("%w: lease %x", ErrLeaseLost, int64(s.lease))
		case <-ticker.C:
		}

		status, err := a.sample(ctx)
		if err != nil {
			// Log a repeated failure once; the last status stays in etcd.
			if err.Error() != lastSampleErr {
				a.log.Warn("sample host; status not updated", "error", err)
			}
			lastSampleErr = err.Error()
			continue
		}
		lastSampleErr = ""

		if err := a.maybeWrite(ctx, s, status); err != nil {
			return err
		}
	}
}

// maybeWrite writes status if it is due. It returns an error only when the
// registration is lost. Other write failures are logged and retried at the
// next tick, because the keepalive decides whether the lease survives.
func (a *Agent) maybeWrite(ctx context.Context, s *session,
	status keyspace.HostStatus) error {
	reason := a.change.changed(&s.lastStatus, &status)
	if reason == "" && a.cfg.Now().Sub(s.lastWrite) >= a.cfg.StatusMaxInterval {
		reason = WriteMaxInterval
	}
	if reason == "" {
		return nil
	}

	err := a.writeStatus(ctx, s, status)
	switch {
	case err == nil:
		s.lastStatus, s.lastWrite = status, a.cfg.Now()
		a.obs.StatusWritten(reason)
		a.log.Debug("status written", "reason", reason)
		a.statusWritten()
		return nil
	case errors.Is(err, ErrStatusLost),
		errors.Is(err, rpctypes.ErrLeaseNotFound):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	a.outage.fail(a.cfg.Now())
	a.log.Warn("write status; retrying at next sample",
		"error", a.explainUnreachable(err),
		"failed_attempts", a.outage.failed)
	return nil
}

// writeStatus puts the status only while the key is attached to the
// session's lease, so a stale agent never overwrites a newer one.
func (a *Agent) writeStatus(ctx context.Context, s *session,
	status keyspace.HostStatus) error {
	val, err := keyspace.Encode(status)
	if err != nil {
		return err
	}
	cctx, cancel := a.call(ctx)
	defer cancel()
	resp, err := a.cli.Txn(cctx).If(
		clientv3.Compare(clientv3.LeaseValue(a.statusKey), "=", s.lease),
	).Then(
		clientv3.OpPut(a.statusKey, val, clientv3.WithLease(s.lease)),
	).Commit()
	if err != nil {
		a.obs.EtcdError("write status", err)
		return fmt.Errorf("write %s: %w", a.statusKey, err)
	}
	if !resp.Succeeded {
		return ErrStatusLost
	}
	return nil
}

// sample reads the host and stamps the status with this agent's identity.
func (a *Agent) sample(ctx context.Context) (keyspace.HostStatus, error) {
	cctx, cancel := a.call(ctx)
	defer cancel()
	st, err := a.cfg.Sample(cctx)
	if err != nil {
		return keyspace.HostStatus{}, fmt.Errorf("sample host: %w", err)
	}
	st.InstanceID = a.instanceID
	st.HeartbeatAt = a.cfg.Now().UTC()
	if st.GPUs == nil {
		st.GPUs = []keyspace.GPUStatus{}
	}
	return st, nil
}
