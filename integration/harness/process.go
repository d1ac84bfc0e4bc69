package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LogDirEnv names an environment variable: when set, process logs are
// written below that folder and kept after the tests, instead of in each
// test's temporary folder.
const LogDirEnv = "REMOTEGPU_IT_LOG_DIR"

// FailureLogLines is how many lines of each process log a failed test
// prints.
const FailureLogLines = 40

// stopTimeout bounds the wait for a process after SIGKILL.
const stopTimeout = 10 * time.Second

// pauseTimeout bounds the wait for every thread to stop after SIGSTOP.
const pauseTimeout = 10 * time.Second

// ErrWaitTimeout is returned by Process.Wait when the process is still
// running at the deadline.
var ErrWaitTimeout = errors.New("process still running")

// ProcessConfig describes a process to start.
type ProcessConfig struct {
	// Name identifies the process in messages and names its log file;
	// it defaults to the binary's file name.
	Name string
	// Path is the binary to run.
	Path string
	Args []string
	// Env is added to the test binary's environment; later entries win.
	Env []string
	// Dir is the working folder; empty means the test binary's.
	Dir string
	// LogFile receives stdout and stderr, appended across restarts. It
	// defaults to <Name>.log in a per-test folder (see LogDirEnv).
	LogFile string
}

// ExitStatus is the exit code or signal that ended a process.
type ExitStatus struct {
	// Code is the exit code, or -1 when a signal ended the process.
	Code int
	// Signal is the signal that ended the process, or 0.
	Signal syscall.Signal
}

// String returns "exit code N" or "signal NAME".
func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return "signal " + s.Signal.String()
	}
	return fmt.Sprintf("exit code %d", s.Code)
}

// run is one start of a process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed by the waiter once cmd.Wait returns
	// status and waitErr are written before done is closed.
	status  ExitStatus
	waitErr error
}

// Process is a child process started for a test. It runs in its own
// process group and is killed, with anything it started, when the test
// ends.
type Process struct {
	t   testing.TB
	cfg ProcessConfig

	// mu guards the fields below.
	mu  sync.Mutex
	cur *run
}

// StartProcess starts cfg.Path and registers a cleanup that kills it and
// prints the tail of its log when the test failed. A start error fails t.
func StartProcess(t testing.TB, cfg ProcessConfig) *Process {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = filepath.Base(cfg.Path)
	}
	if cfg.LogFile == "" {
		cfg.LogFile = filepath.Join(logDir(t), cfg.Name+".log")
	}
	p := &Process{t: t, cfg: cfg}
	t.Cleanup(p.cleanup)
	if err := p.start(); err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	return p
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !isClosed(p.cur.done) {
		return fmt.Errorf("%s is still running as pid %d",
			p.cfg.Name, p.cur.cmd.Process.Pid)
	}

	logFile, err := os.OpenFile(p.cfg.LogFile,
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== harness: %s start %s %s\n",
		time.Now().Format(time.RFC3339Nano), p.cfg.Path,
		strings.Join(p.cfg.Args, " "))

	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Dir = p.cfg.Dir
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// The kernel kills the child if the test binary dies first.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return err
	}

	r := &run{cmd: cmd, done: make(chan struct{})}
	p.cur = r
	go r.wait()
	return nil
}

func (r *run) wait() {
	err := r.cmd.Wait()
	st := r.cmd.ProcessState
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		r.waitErr = err
	}
	if st != nil {
		r.status.Code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.status.Signal = ws.Signal()
		}
	}
	close(r.done)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (p *Process) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// Name returns the name used in messages and in the log file name.
func (p *Process) Name() string { return p.cfg.Name }

// Config returns the configuration of the process.
func (p *Process) Config() ProcessConfig {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// PID returns the process ID of the current or last run.
func (p *Process) PID() int { return p.current().cmd.Process.Pid }

// Done returns a channel that is closed when the current run exits.
func (p *Process) Done() <-chan struct{} { return p.current().done }

// Running reports whether the current run has not exited. A process
// stopped with SIGSTOP is running.
func (p *Process) Running() bool { return !isClosed(p.current().done) }

// Signal sends sig to the process itself, not to its group.
func (p *Process) Signal(sig syscall.Signal) error {
	r := p.current()
	if isClosed(r.done) {
		return fmt.Errorf("signal %s to %s: process already exited",
			sig, p.cfg.Name)
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, p.cfg.Name, err)
	}
	return nil
}

// Wait waits up to timeout for the current run to exit. It returns
// ErrWaitTimeout when the process is still running then.
func (p *Process) Wait(timeout time.Duration) (ExitStatus, error) {
	r := p.current()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-r.done:
		return r.status, r.waitErr
	case <-timer.C:
		return ExitStatus{}, fmt.Errorf("wait %s for %s: %w",
			p.cfg.Name, timeout, ErrWaitTimeout)
	}
}

// Kill sends SIGKILL and waits for the exit. It fails the test if the
// process outlives stopTimeout. Killing an exited process does nothing.
func (p *Process) Kill() ExitStatus {
	p.t.Helper()
	return p.signalAndWait(syscall.SIGKILL, stopTimeout)
}

// Terminate sends SIGTERM and waits up to timeout for the exit, which
// fails the test when it does not come. It also sends SIGCONT, so that a
// paused process handles the SIGTERM.
func (p *Process) Terminate(timeout time.Duration) ExitStatus {
	p.t.Helper()
	return p.signalAndWait(syscall.SIGTERM, timeout)
}

// Pause stops the process with SIGSTOP, so it keeps its sockets open but
// responds to nothing, like a hung host. It returns once every thread is
// stopped. Resume continues it.
func (p *Process) Pause() {
	p.t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		p.t.Fatal(err)
	}

	// The kernel wakes one thread to carry out the stop. On a loaded
	// machine that thread may wait for a CPU while the others keep
	// serving, so wait until /proc shows every thread stopped.
	pid := p.PID()
	_, ok := poll(pauseTimeout, time.Millisecond, func() bool {
		stopped, err := allThreadsStopped(pid)
		return err != nil || stopped
	})
	if !ok {
		p.t.Fatalf("%s (pid %d) not stopped %s after SIGSTOP",
			p.cfg.Name, pid, pauseTimeout)
	}
}

// Resume continues a process stopped by Pause.
func (p *Process) Resume() {
	p.t.Helper()
	if err := p.Signal(syscall.SIGCONT); err != nil {
		p.t.Fatal(err)
	}
}

func (p *Process) signalAndWait(sig syscall.Signal,
	timeout time.Duration) ExitStatus {
	p.t.Helper()
	r := p.current()
	if isClosed(r.done) {
		return r.status
	}
	// An error means the process already exited, which Wait reports.
	_ = r.cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
	}
	st, err := p.Wait(timeout)
	if err != nil {
		p.t.Fatalf("%s after %s: %v", p.cfg.Name, sig, err)
	}
	return st
}

// Restart starts the process again, with the same configuration, after
// its last run exited. Its output is appended to the same log file.
func (p *Process) Restart() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("restart %s: %v", p.cfg.Name, err)
	}
}

// RestartArgs is Restart with new arguments, which later restarts keep.
func (p *Process) RestartArgs(args []string) {
	p.t.Helper()
	p.mu.Lock()
	p.cfg.Args = append([]string(nil), args...)
	p.mu.Unlock()
	p.Restart()
}

// cleanup kills the process group and, for a failed test, prints the tail
// of the log.
func (p *Process) cleanup() {
	r := p.current()
	if r != nil && !isClosed(r.done) {
		// The negative PID addresses the whole group.
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-r.done:
		case <-time.After(stopTimeout):
			p.t.Errorf("%s (pid %d) did not exit after SIGKILL",
				p.cfg.Name, r.cmd.Process.Pid)
		}
	}
	if p.t.Failed() {
		p.t.Logf("last %d lines of %s (%s):\n%s", FailureLogLines,
			p.cfg.Name, p.cfg.LogFile, p.LogTail(FailureLogLines))
	}
}

// LogPath returns the file that receives the process's output.
func (p *Process) LogPath() string { return p.cfg.LogFile }

// Logs returns everything the process wrote so far, over all runs.
func (p *Process) Logs() string {
	data, err := os.ReadFile(p.cfg.LogFile)
	if err != nil {
		return fmt.Sprintf("(read log %s: %v)", p.cfg.LogFile, err)
	}
	return string(data)
}

// LogTail returns the last n lines of the log.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLog waits until the log contains substr. It fails the test when
// timeout passes first or the process exits without writing it.
func (p *Process) WaitLog(substr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.Logs(), substr) {
			return
		}
		if !p.Running() {
			p.t.Fatalf("%s exited (%s) before logging %q",
				p.cfg.Name, p.current().status, substr)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log %q within %s",
				p.cfg.Name, substr, timeout)
		}
		<-tick.C
	}
}

// logDir returns the folder for the test's process logs.
func logDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv(LogDirEnv)
	if base == "" {
		return t.TempDir()
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create log folder %s: %v", dir, err)
	}
	return dir
}
