package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// binary is the remotegpu-coordinator built for this test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "remotegpu-coordinator-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "remotegpu-coordinator")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build remotegpu-coordinator:", err)
		os.Exit(1)
	}

	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// process is a started remotegpu-coordinator with its output captured.
type process struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
	err    error
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary, args...), output: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns the exit code once the process ended within d.
func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("process still running after %s; output:\n%s", d, p.output.String())
		return -1
	}
}

// runCLI runs a client command to completion.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if exitErr, ok := err.(*exec.ExitError); ok {
		return string(out), exitErr.ExitCode()
	}
	require.NoError(t, err)
	return string(out), 0
}

type ports struct {
	listen, etcdClient, etcdPeer string
}

func freePorts(t *testing.T) ports {
	return ports{
		listen:     fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t)),
		etcdClient: fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
		etcdPeer:   fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
	}
}

func serveArgs(p ports, dataDir string) []string {
	return []string{
		"serve", "--listen", p.listen, "--data-dir", dataDir,
		"--etcd-listen-client", p.etcdClient, "--etcd-listen-peer", p.etcdPeer,
		"--log-level", "debug",
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the coordinator binary with an embedded etcd")
	}
	dataDir := t.TempDir()
	p := freePorts(t)
	addr := "http://" + p.listen
	coord := start(t, serveArgs(p, dataDir)...)

	c, err := client.New(addr, client.WithTimeout(5*time.Second))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ready(ctx) == nil
	}, 30*time.Second, 50*time.Millisecond, "output:\n%s", coord.output.String())

	// A fake agent registers through the embedded etcd, as a real one would.
	etcd := etcdClient(t, p.etcdClient)
	stopAgent := putAgent(t, etcd, "gpu-host-1", 2)
	require.Eventually(t, func() bool {
		h, err := c.GetHost(ctxFor(t, time.Second), "gpu-host-1")
		return err == nil && h.Health == api.HealthHealthy
	}, 10*time.Second, 20*time.Millisecond)

	t.Run("allocate through the client", func(t *testing.T) {
		alloc, created, err := c.Allocate(ctxFor(t, 5*time.Second), api.AllocationRequest{
			CPU: 4, Memory: 8 << 30, GPU: 1, Owner: "e2e", IdempotencyKey: "e2e-1",
		})
		require.NoError(t, err)
		assert.True(t, created)
		assert.Equal(t, "gpu-host-1", alloc.HostID)
		assert.Equal(t, "GPU-gpu-host-1-0", alloc.CUDAVisibleDevices)

		again, created, err := c.Allocate(ctxFor(t, 5*time.Second), api.AllocationRequest{
			CPU: 4, Memory: 8 << 30, GPU: 1, Owner: "e2e", IdempotencyKey: "e2e-1",
		})
		require.NoError(t, err)
		assert.False(t, created)
		assert.Equal(t, alloc.ID, again.ID)

		_, _, err = c.Allocate(ctxFor(t, 5*time.Second), api.AllocationRequest{})
		require.ErrorIs(t, err, client.ErrInvalid, "the real fleet rejects an empty request")
		_, _, err = c.Allocate(ctxFor(t, 5*time.Second), api.AllocationRequest{GPU: 3})
		require.ErrorIs(t, err, client.ErrNoCapacity)
	})

	t.Run("hosts table", func(t *testing.T) {
		require.Eventually(t, func() bool {
			out, code := runCLI(t, "hosts", "--addr", addr)
			return code == 0 && strings.Contains(out, "1/2")
		}, 10*time.Second, 50*time.Millisecond)
		out, code := runCLI(t, "hosts", "--addr", addr)
		require.Equal(t, 0, code, out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 2, out)
		assert.Regexp(t, `^ID\s+ADDRESS\s+HEALTH\s+CPU\s+MEMORY \(GiB\)\s+GPUS FREE\s+LAST HEARTBEAT$`, lines[0])
		assert.Regexp(t, `^gpu-host-1\s+10\.9\.8\.7\s+healthy\s+4/16\s+8\.0/64\.0\s+1/2\s+\d+s ago$`, lines[1])
	})

	t.Run("other commands", func(t *testing.T) {
		out, code := runCLI(t, "allocate", "--addr", addr, "--gpu", "1", "--memory", "1GiB", "--owner", "cli")
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "CUDA_VISIBLE_DEVICES=GPU-gpu-host-1-1")

		out, code = runCLI(t, "allocate", "--addr", addr, "--gpu", "1")
		assert.Equal(t, 1, code)
		assert.Regexp(t, `^Error: no capacity: .*\(HTTP 409\)\n$`, out)

		out, code = runCLI(t, "allocations", "--addr", addr, "--owner", "cli")
		require.Equal(t, 0, code, out)
		assert.Regexp(t, `(?m)^\S+\s+gpu-host-1\s+cli\s+active\s`, out)

		out, code = runCLI(t, "drain", "gpu-host-1", "--addr", addr)
		require.Equal(t, 0, code, out)
		out, code = runCLI(t, "hosts", "--addr", addr)
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "healthy,draining")
	})

	t.Run("second serve fails fast", func(t *testing.T) {
		other := freePorts(t)

		// Same data dir, other ports: the folder is locked.
		begin := time.Now()
		out, code := runCLI(t, serveArgs(other, dataDir)...)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, fmt.Sprintf("etcd data dir %q is in use by another process", dataDir))
		assert.Less(t, time.Since(begin), 10*time.Second)

		// Same --listen.
		out, code = runCLI(t, serveArgs(ports{p.listen, other.etcdClient, other.etcdPeer}, t.TempDir())...)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "listen on --listen "+p.listen)

		// Same etcd client port.
		out, code = runCLI(t, serveArgs(ports{other.listen, p.etcdClient, other.etcdPeer}, t.TempDir())...)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "etcd listen address "+strings.TrimPrefix(p.etcdClient, "http://")+" is not available")
	})

	// SIGTERM stops it cleanly. The agent's keepalive stream goes first:
	// embedded etcd waits up to its request timeout (7 s by default) for
	// open streams when it closes, which would only slow the test down.
	stopAgent()
	require.NoError(t, etcd.Close())
	begin := time.Now()
	require.NoError(t, coord.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, coord.wait(t, 20*time.Second), coord.output.String())
	assert.Less(t, time.Since(begin), 5*time.Second)
	assert.Contains(t, coord.output.String(), `msg="coordinator stopped"`)
}

func TestVersion(t *testing.T) {
	out, code := runCLI(t, "--version")
	require.Equal(t, 0, code)
	assert.Regexp(t, `^remotegpu-coordinator \S+\n$`, out)
}

func etcdClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// putAgent writes a host's info, and its status under a 5 s lease that
// stays alive until the returned stop is called or the test ends, as
// remotegpu-agent does.
func putAgent(t *testing.T, cli *clientv3.Client, id string, gpus int) (stop func()) {
	t.Helper()
	ks, err := keyspace.New(keyspace.DefaultPrefix)
	require.NoError(t, err)
	ctx := ctxFor(t, 5*time.Second)

	info := keyspace.HostInfo{
		ID: id, Name: id, IPAddress: "10.9.8.7", TotalCPU: 16, TotalMemory: 64 << 30,
		AgentVersion: "e2e", InstanceID: "run-1", RegisteredAt: time.Now(),
	}
	status := keyspace.HostStatus{InstanceID: "run-1", HeartbeatAt: time.Now(), AvailableMemory: 60 << 30}
	for i := range gpus {
		uuid := fmt.Sprintf("GPU-%s-%d", id, i)
		info.GPUs = append(info.GPUs, keyspace.GPUInfo{Index: i, UUID: uuid, Name: "NVIDIA H100", MemoryTotal: 80 << 30})
		used := int64(1 << 20)
		status.GPUs = append(status.GPUs, keyspace.GPUStatus{
			Index: i, UUID: uuid, MemoryUsed: &used, Health: keyspace.GPUHealthy,
		})
	}
	infoJSON, err := keyspace.Encode(info)
	require.NoError(t, err)
	statusJSON, err := keyspace.Encode(status)
	require.NoError(t, err)

	lease, err := cli.Grant(ctx, 5)
	require.NoError(t, err)
	_, err = cli.Put(ctx, ks.HostInfo(id), infoJSON)
	require.NoError(t, err)
	_, err = cli.Put(ctx, ks.HostStatus(id), statusJSON, clientv3.WithLease(lease.ID))
	require.NoError(t, err)

	kaCtx, cancel := context.WithCancel(context.Background())
	responses, err := cli.KeepAlive(kaCtx, lease.ID)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range responses {
		}
	}()
	stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
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
