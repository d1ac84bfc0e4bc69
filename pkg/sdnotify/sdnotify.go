package sdnotify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notification states of the sd_notify protocol.
const (
	stateReady    = daemon.SdNotifyReady
	stateStopping = daemon.SdNotifyStopping
	stateWatchdog = daemon.SdNotifyWatchdog
)

// Notifier sends state changes to systemd. The zero value is not usable;
// create one with New. Its methods are safe for concurrent use.
type Notifier struct {
	log   *slog.Logger
	ready sync.Once

	// mu guards lastCheckErr.
	mu           sync.Mutex
	lastCheckErr string
}

// New returns a Notifier that logs send failures to log, or discards
// them when log is nil.
func New(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{log: log}
}

// Ready sends READY=1 the first time it is called and does nothing after.
func (n *Notifier) Ready() {
	n.ready.Do(func() { n.send(stateReady) })
}

// Status sends STATUS=msg, which systemctl status shows. msg must be a
// single line without secrets.
func (n *Notifier) Status(msg string) {
	n.send("STATUS=" + msg)
}

// Stopping sends STOPPING=1, telling systemd that shutdown has begun.
func (n *Notifier) Stopping() {
	n.send(stateStopping)
}

func (n *Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("send state to systemd", "state", state, "error", err)
	}
}

// WatchdogInterval returns the pause between watchdog pings, half of
// systemd's WATCHDOG_USEC, and false when systemd expects no pings for
// this process.
func WatchdogInterval() (time.Duration, bool) {
	timeout, err := daemon.SdWatchdogEnabled(false)
	if err != nil || timeout <= 0 {
		return 0, false
	}
	return timeout / 2, true
}

// Watchdog sends WATCHDOG=1 every interval while check returns nil, until
// ctx ends. A failing check skips the ping and is logged once per distinct
// error, so systemd restarts the daemon if the check keeps failing for
// WatchdogSec. Each check gets a context bounded by interval. Watchdog
// returns at once when systemd set no watchdog.
func (n *Notifier) Watchdog(ctx context.Context,
	check func(context.Context) error) {
	interval, ok := WatchdogInterval()
	if !ok {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		n.ping(ctx, interval, check)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// ping runs one check and sends WATCHDOG=1 if it passed.
func (n *Notifier) ping(ctx context.Context, interval time.Duration,
	check func(context.Context) error) {
	cctx, cancel := context.WithTimeout(ctx, interval)
	err := check(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	n.noteCheck(err)
	if err == nil {
		n.send(stateWatchdog)
	}
}

// noteCheck logs a failing check when its error differs from the last
// one, and logs recovery once.
func (n *Notifier) noteCheck(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	n.mu.Lock()
	prev := n.lastCheckErr
	n.lastCheckErr = msg
	n.mu.Unlock()

	switch {
	case msg == prev:
	case msg == "":
		n.log.Info("liveness check passes again; watchdog pings resumed")
	default:
		n.log.Warn("liveness check failed; watchdog ping skipped",
			"error", err)
	}
}
