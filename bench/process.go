package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a child process started by the benchmarks.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProcess starts bin with args and env added to this process's
// environment, with stdout and stderr appended to logPath.
func StartProcess(name, bin, logPath string, env, args []string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited returns a channel closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM, waits up to grace, then kills the process. It
// returns nil once the process is gone, whatever its exit status.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil &&
		!errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.Name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	<-p.done
	return nil
}

// WaitHTTPOK polls url until it returns 200, the process exits or timeout
// passes, and returns the time it took.
func (p *Process) WaitHTTPOK(ctx context.Context, url string,
	timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return 0, fmt.Errorf("%s exited (%v) before %s returned 200", p.Name, p.err, url)
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		status, err := httpGetStatus(ctx, url)
		if err == nil && status == http.StatusOK {
			return time.Since(start), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("HTTP %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s did not return 200 within %s: %s", url, timeout, last)
}

func httpGetStatus(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Coordinator is a remotegpu-coordinator serve process on an external
// etcd.
type Coordinator struct {
	*Process
	URL string
}

// StartCoordinator starts `serve --etcd-endpoints endpoint` on a free
// port and waits for /readyz.
func StartCoordinator(ctx context.Context, bin, endpoint, logPath string,
	extra ...string) (*Coordinator, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args := append([]string{"serve", "--listen", listen, "--etcd-endpoints", endpoint,
		"--log-level", "warn"}, extra...)
	p, err := StartProcess("coordinator "+listen, bin, logPath, nil, args)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{Process: p, URL: "http://" + listen}
	return c, nil
}

// WaitReady waits for /readyz to return 200.
func (c *Coordinator) WaitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	return c.WaitHTTPOK(ctx, c.URL+"/readyz", timeout)
}
