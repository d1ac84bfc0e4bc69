// Package sdnotify reports a daemon's state to systemd with the sd_notify
// protocol, for units with Type=notify and WatchdogSec.
//
// A Notifier sends READY=1 at most once per process, STATUS= lines
// whenever the caller has news, STOPPING=1 on shutdown and, from Watchdog,
// WATCHDOG=1 at half the interval systemd set in WATCHDOG_USEC, but only
// while the caller's liveness check passes. A failing check stops the
// pings, so systemd restarts a daemon whose main loop is stuck.
//
// Every method is a no-op when NOTIFY_SOCKET is unset, so daemons run the
// same way outside systemd. Send errors are logged at warn level and never
// stop the daemon. The environment is left as it is, so child processes
// would inherit NOTIFY_SOCKET; the daemons start none.
package sdnotify
