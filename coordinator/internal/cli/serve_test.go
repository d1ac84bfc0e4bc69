package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestServeFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--prefix", "remotegpu"}, `--prefix: invalid prefix "remotegpu": it must start with "/"`},
		{[]string{"--busy-gpu-memory", "1XB"}, `invalid size "1XB"`},
		{[]string{"--max-attempts", "0"}, "invalid --max-attempts 0: must be at least 1"},
		{[]string{"--default-allocation-ttl", "1500ms"}, "invalid --default-allocation-ttl 1.5s: use whole seconds"},
		{[]string{"--default-allocation-ttl", "-1s"}, "invalid --default-allocation-ttl -1s: " +
			"it is negative; use 0 for no expiry, or a duration from 1s to 8760h (one year)"},
		{[]string{"--default-allocation-ttl", "8761h"}, "invalid --default-allocation-ttl " +
			"8761h0m0s: it is more than the maximum of 8760h (one year)"},
		{[]string{"--released-retention", "1s"}, "invalid --released-retention 1s: must be at least 2s"},
		{[]string{"--etcd-call-timeout", "0s"}, "invalid --etcd-call-timeout 0s"},
		{[]string{"--shutdown-timeout", "0s"}, "invalid --shutdown-timeout 0s"},
		{[]string{"--listen", "8080"}, `invalid --listen "8080": use host:port`},
		{[]string{"--listen", ""}, "--listen is empty"},
		{[]string{"--log-level", "loud"}, `invalid --log-level "loud"`},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:1", "--etcd-listen-client", "http://127.0.0.1:2"},
			"--data-dir, --etcd-listen-client apply only to the embedded etcd, which --etcd-endpoints turns off"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:1"},
			"--data-dir applies only to the embedded etcd, which --etcd-endpoints turns off; unset one of the two"},
		{[]string{"--listen", ":99999"}, `invalid --listen ":99999": port "99999" is not a number from 0 to 65535`},
		{[]string{"--listen", "127.0.0.1:-1"}, `port "-1" is not a number`},
		{[]string{"--listen", "127.0.0.1:http"}, `port "http" is not a number`},
		{[]string{"--listen", "127.0.0.1:"}, `port "" is not a number`},
		{[]string{"--listen", "[::1"}, `invalid --listen "[::1": use host:port`},
		{[]string{"--etcd-endpoints", "127.0.0.1:2379"}, `invalid etcd endpoint "127.0.0.1:2379"`},
		{[]string{"extra"}, `unknown command "extra"`},
	}
	for _, tc := range cases {
		args := append([]string{"serve", "--data-dir", dir}, tc.args...)
		code, stdout, stderr := run(t, args...)
		assert.Equal(t, 2, code, "args %v", tc.args)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, tc.want, "args %v", tc.args)
		assert.Contains(t, stderr, "Run 'remotegpu-coordinator serve --help' for usage.", "args %v", tc.args)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no bad flag may touch the data dir")
}

func TestEmbeddedFlagConflictNamesEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("REMOTEGPU_DATA_DIR", dir)
	t.Setenv("REMOTEGPU_ETCD_ENDPOINTS", "http://127.0.0.1:1")

	code, _, stderr := run(t, "serve")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--data-dir (set by REMOTEGPU_DATA_DIR) applies only to the "+
		"embedded etcd, which --etcd-endpoints (set by REMOTEGPU_ETCD_ENDPOINTS) turns off; "+
		"unset one of the two")

	// A flag on the command line is named without a variable.
	code, _, stderr = run(t, "serve", "--data-dir", dir)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--data-dir applies only to the embedded etcd, which "+
		"--etcd-endpoints (set by REMOTEGPU_ETCD_ENDPOINTS) turns off")

	t.Setenv("REMOTEGPU_LISTEN", ":99999")
	code, _, stderr = run(t, "serve", "--etcd-endpoints", "http://127.0.0.1:1")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `invalid --listen ":99999" (set by REMOTEGPU_LISTEN): port "99999"`)
}

func TestDataDirDefaultsToStateDirectory(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/remotegpu:/var/lib/other")
	assert.Equal(t, "/var/lib/remotegpu", defaultDataDir())
	code, stdout, _ := run(t, "serve", "--help")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, `folder of the embedded etcd member's data (default "/var/lib/remotegpu")`)

	t.Setenv("STATE_DIRECTORY", "relative")
	assert.NotEqual(t, "relative", defaultDataDir(), "only an absolute folder is used")
}

// TestServeWithUnitEnvironment runs serve with the environment that the
// systemd unit gives it when the env file selects an external etcd:
// STATE_DIRECTORY from StateDirectory= and REMOTEGPU_ETCD_ENDPOINTS.
func TestServeWithUnitEnvironment(t *testing.T) {
	cluster := etcdtest.Start(t)
	stateDir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	t.Setenv("STATE_DIRECTORY", stateDir)
	t.Setenv("REMOTEGPU_ETCD_ENDPOINTS", cluster.Endpoint)
	t.Setenv("REMOTEGPU_LISTEN", listen)

	s := startServe(t, []string{"serve", "--shutdown-timeout", "5s"})
	waitReady(t, newClient(t, "http://"+listen), s)
	require.Equal(t, 0, s.stop(t), "log:\n%s", s.stderr.String())
	assert.NotContains(t, s.stderr.String(), "applies only to the embedded etcd")

	entries, err := os.ReadDir(stateDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "an external etcd leaves the state folder alone")
}

func TestServeListenInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	dataDir := filepath.Join(t.TempDir(), "data")

	code, _, stderr := run(t, "serve", "--listen", l.Addr().String(), "--data-dir", dataDir)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "listen on --listen "+l.Addr().String())
	assert.Contains(t, stderr, "address already in use")
	assert.NoDirExists(t, dataDir, "the port is checked before etcd starts")
}

// serveArgs returns serve flags with an embedded etcd on free ports.
func serveArgs(t *testing.T, dataDir string) (args []string, addr string) {
	t.Helper()
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	return []string{
		"serve", "--listen", listen, "--data-dir", dataDir,
		"--etcd-listen-client", fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
		"--etcd-listen-peer", fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t)),
		"--log-level", "debug", "--shutdown-timeout", "5s",
	}, "http://" + listen
}

// runningServe is a serve command running in this process.
type runningServe struct {
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
}

func startServe(t *testing.T, args []string) *runningServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServe{cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	go func() {
		s.done <- Main(ctx, args, &syncBuffer{}, s.stderr)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels the command and returns its exit code.
func (s *runningServe) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code
		return code
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not stop; log:\n%s", s.stderr.String())
		return -1
	}
}

func waitReady(t *testing.T, c *client.Client, s *runningServe) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ready(ctx) == nil
	}, 20*time.Second, 20*time.Millisecond, "log:\n%s", s.stderr.String())
}

func newClient(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.New(addr, client.WithTimeout(5*time.Second),
		client.WithRetry(1, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	return c
}

func TestServeEmbeddedStartStopRestart(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	args, addr := serveArgs(t, dataDir)
	c := newClient(t, addr)

	s := startServe(t, args)
	waitReady(t, c, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Allocate(ctx, api.AllocationRequest{GPU: 1})
	require.ErrorIs(t, err, client.ErrNoCapacity)

	require.Equal(t, 0, s.stop(t), "log:\n%s", s.stderr.String())
	log := s.stderr.String()
	assert.Contains(t, log, `msg="embedded etcd started"`)
	assert.Contains(t, log, `msg="coordinator stopping"`)
	assert.Contains(t, log, `msg="embedded etcd stopped"`)
	assert.Contains(t, log, `msg="coordinator stopped"`)
	assert.Contains(t, log, `path=/v1/allocations status=409`)

	// The same data dir and ports serve again once the first one stopped.
	s = startServe(t, args)
	waitReady(t, c, s)
	require.Equal(t, 0, s.stop(t))
}

func TestServeExternalEtcd(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.Start(t)
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	c := newClient(t, "http://"+listen)

	s := startServe(t, []string{
		"serve", "--listen", listen, "--etcd-endpoints", cluster.Endpoint,
		"--prefix", "/fleet-a", "--log-level", "debug",
	})
	waitReady(t, c, s)

	ks, err := keyspace.New("/fleet-a")
	require.NoError(t, err)
	putAgent(t, cluster.Client, ks, "gpu-7", 2)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		h, err := c.GetHost(ctx, "gpu-7")
		return err == nil && h.Health == api.HealthHealthy
	}, 10*time.Second, 20*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	alloc, created, err := c.Allocate(ctx, api.AllocationRequest{GPU: 2, Owner: "bob"})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, "GPU-gpu-7-0,GPU-gpu-7-1", alloc.CUDAVisibleDevices)

	require.Equal(t, 0, s.stop(t))
	assert.NotContains(t, s.stderr.String(), "embedded etcd")

	// The external cluster outlives the coordinator and keeps the record.
	resp, err := cluster.Client.Get(ctx, ks.Allocation(alloc.ID))
	require.NoError(t, err)
	assert.Len(t, resp.Kvs, 1)
}

// putAgent writes what an agent writes: the host's info, and its status
// under a lease of 5 s that the test keeps alive.
func putAgent(t *testing.T, cli *clientv3.Client, ks keyspace.Keyspace, id string, gpus int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	info := keyspace.HostInfo{
		ID: id, Name: id, IPAddress: "10.1.2.3", TotalCPU: 16, TotalMemory: 64 << 30,
		AgentVersion: "test", InstanceID: "run-1", RegisteredAt: time.Now(),
	}
	status := keyspace.HostStatus{InstanceID: "run-1", HeartbeatAt: time.Now(), AvailableMemory: 60 << 30}
	for i := range gpus {
		uuid := fmt.Sprintf("GPU-%s-%d", id, i)
		info.GPUs = append(info.GPUs, keyspace.GPUInfo{
			Index: i, UUID: uuid, Name: "NVIDIA A100", MemoryTotal: 80 << 30,
		})
		used := int64(0)
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

	kaCtx, kaCancel := context.WithCancel(context.Background())
	ch, err := cli.KeepAlive(kaCtx, lease.ID)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range ch {
		}
	}()
	t.Cleanup(func() {
		kaCancel()
		wg.Wait()
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
