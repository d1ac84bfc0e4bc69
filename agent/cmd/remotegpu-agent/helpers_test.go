package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// agentBin is the agent binary built by TestMain.
var agentBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "remotegpu-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	agentBin = filepath.Join(dir, "remotegpu-agent")
	build := exec.Command("go", "build", "-o", agentBin, ".")
	build.Env = append(os.Environ(), "CGO_CFLAGS=-Wno-deprecated-declarations")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build agent: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// Timing used by the process tests: the smallest TTL etcd honours.
const (
	testTTL      = 2 * time.Second
	testInterval = 200 * time.Millisecond
)

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// agentProc is a running agent process.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	exit   int // set before done is closed
}

// runArgs returns the flags of an agent that registers hostID under prefix
// in the test's etcd, with short test timings and simulated GPUs.
func runArgs(endpoint, prefix, hostID string, extra ...string) []string {
	args := []string{"run",
		"--etcd-endpoints", endpoint, "--prefix", prefix,
		"--host-id", hostID, "--ttl", testTTL.String(),
		"--interval", testInterval.String(), "--status-max-interval", "1s",
		"--gpu-backend", "mock-dgxa100", "--log-level", "debug",
	}
	return append(args, extra...)
}

// startAgent starts the binary with args and extra environment variables.
// The process is killed when the test ends if it still runs.
func startAgent(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{
		cmd:    exec.Command(agentBin, args...),
		stderr: &syncBuffer{},
		done:   make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		err := p.cmd.Wait()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exitErr):
			p.exit = exitErr.ExitCode()
		default:
			p.exit = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("agent %v output:\n%s", args, p.stderr.String())
		}
	})
	return p
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the agent.
func (p *agentProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// wait returns the exit status once the process exits within d.
func (p *agentProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.exit
	case <-time.After(d):
		t.Fatalf("agent still running after %s; output:\n%s", d, p.stderr.String())
		return 0
	}
}

// hostKeys reads a host's documents from etcd.
type hostKeys struct {
	t   *testing.T
	cli *clientv3.Client
	ks  keyspace.Keyspace
	id  string
}

func newHostKeys(t *testing.T, cli *clientv3.Client, prefix, id string) hostKeys {
	ks, err := keyspace.New(prefix)
	require.NoError(t, err)
	return hostKeys{t: t, cli: cli, ks: ks, id: id}
}

// newClient returns a client of its own, so that a check after an etcd
// outage does not wait for the reconnect backoff of a shared client.
func newClient(t *testing.T, endpoint string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (h hostKeys) get(key string) (*mvccpb.KeyValue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := h.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	return resp.Kvs[0], nil
}

// hostState is what etcd holds about a host at one moment.
type hostState struct {
	status   *keyspace.HostStatus
	lease    clientv3.LeaseID
	revision int64
	info     *keyspace.HostInfo
}

// read returns the decoded documents; a missing key leaves its field nil.
func (h hostKeys) read() (hostState, error) {
	var s hostState
	statusKey, infoKey := h.ks.HostStatus(h.id), h.ks.HostInfo(h.id)
	kv, err := h.get(statusKey)
	if err != nil {
		return s, err
	}
	if kv != nil {
		s.lease, s.revision = clientv3.LeaseID(kv.Lease), kv.ModRevision
		if s.status, err = keyspace.DecodeHostStatus(statusKey, kv.Value); err != nil {
			return s, err
		}
	}
	if kv, err = h.get(infoKey); err != nil || kv == nil {
		return s, err
	}
	s.info, err = keyspace.DecodeHostInfo(infoKey, kv.Value)
	return s, err
}

// mustRead is read for direct assertions: an error fails the test.
func (h hostKeys) mustRead() hostState {
	h.t.Helper()
	s, err := h.read()
	require.NoError(h.t, err)
	return s
}

// registered reports whether the host is registered under a live lease by
// an instance other than notInstance.
func (s hostState) registered(notInstance string) bool {
	return s.status != nil && s.lease != 0 && s.info != nil &&
		s.info.InstanceID == s.status.InstanceID &&
		s.info.StoppedAt == nil && s.info.InstanceID != notInstance
}

// waitRegistered waits until an instance other than notInstance ("" for
// any) has registered the host, and returns what etcd holds.
func (h hostKeys) waitRegistered(within time.Duration, notInstance string) hostState {
	h.t.Helper()
	var s hostState
	require.Eventually(h.t, func() bool {
		var err error
		s, err = h.read()
		return err == nil && s.registered(notInstance)
	}, within, 50*time.Millisecond, "host %s not registered", h.id)
	return s
}

// leaseTTL returns a lease's remaining TTL in seconds, -1 once it is gone.
func (h hostKeys) leaseTTL(id clientv3.LeaseID) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := h.cli.TimeToLive(ctx, id)
	if err != nil {
		return 0, err
	}
	return resp.TTL, nil
}
