package fleet

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

const gib = int64(1) << 30

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is one real etcd member, a keyspace and a captured log.
type env struct {
	cluster *etcdtest.Cluster
	cli     *clientv3.Client
	ks      keyspace.Keyspace
	logs    *logBuffer
	log     *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := etcdtest.Start(t)
	ks, err := keyspace.New("/rg")
	require.NoError(t, err)
	logs := &logBuffer{}
	return &env{
		cluster: c,
		cli:     c.Client,
		ks:      ks,
		logs:    logs,
		log: slog.New(slog.NewTextHandler(logs,
			&slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// config returns a Config for e with test-friendly timeouts.
func (e *env) config() Config {
	return Config{
		Client:      e.cli,
		Keyspace:    e.ks,
		Logger:      e.log,
		CallTimeout: 3 * time.Second,
	}
}

// startFleet creates a Fleet, runs it until the test ends and waits
// until it has listed etcd.
func (e *env) startFleet(t *testing.T, modify func(*Config)) *Fleet {
	t.Helper()
	cfg := e.config()
	if modify != nil {
		modify(&cfg)
	}
	f, err := New(cfg)
	require.NoError(t, err)
	runFleet(t, f)
	return f
}

// runFleet runs f until the test ends and waits until it is ready.
func runFleet(t *testing.T, f *Fleet) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, f.Ready, 10*time.Second, 10*time.Millisecond)
}

// hostDoc builds a registration with n GPUs named "NVIDIA A100-SXM4-40GB"
// of 40 GiB each.
func hostDoc(id string, cpu int, memoryGiB int64, n int) *keyspace.HostInfo {
	info := &keyspace.HostInfo{
		ID:           id,
		Name:         "node-" + id,
		IPAddress:    "10.0.0.1",
		TotalCPU:     cpu,
		TotalMemory:  memoryGiB * gib,
		AgentVersion: "test",
		InstanceID:   "instance-1",
		RegisteredAt: time.Unix(1_700_000_000, 0).UTC(),
	}
	for i := range n {
		info.GPUs = append(info.GPUs, keyspace.GPUInfo{
			Index:       i,
			UUID:        fmt.Sprintf("GPU-%s-%d", id, i),
			Name:        "NVIDIA A100-SXM4-40GB",
			MemoryTotal: 40 * gib,
		})
	}
	return info
}

// statusDoc builds a status that reports every GPU of info healthy and
// idle.
func statusDoc(info *keyspace.HostInfo) *keyspace.HostStatus {
	st := &keyspace.HostStatus{
		InstanceID:  info.InstanceID,
		HeartbeatAt: time.Unix(1_700_000_100, 0).UTC(),
		CPUPercent:  12.5,
		UsedMemory:  3 * gib,
	}
	for _, g := range info.GPUs {
		used := int64(300 << 20)
		st.GPUs = append(st.GPUs, keyspace.GPUStatus{
			Index: g.Index, UUID: g.UUID, Health: keyspace.GPUHealthy,
			MemoryUsed: &used,
		})
	}
	return st
}

// register writes info and status the way an agent does, with the status
// attached to a new lease of ttl seconds, and returns the lease.
func (e *env) register(
	t *testing.T, info *keyspace.HostInfo, st *keyspace.HostStatus, ttl int64,
) clientv3.LeaseID {
	t.Helper()
	ctx := etcdtest.Ctx(t, 10*time.Second)
	lease, err := e.cli.Grant(ctx, ttl)
	require.NoError(t, err)
	_, err = e.cli.Txn(ctx).Then(
		clientv3.OpPut(e.ks.HostInfo(info.ID), encode(t, info)),
		clientv3.OpPut(e.ks.HostStatus(info.ID), encode(t, st),
			clientv3.WithLease(lease.ID)),
	).Commit()
	require.NoError(t, err)
	return lease.ID
}

// registerHost registers info with an all-healthy status and a long lease.
func (e *env) registerHost(t *testing.T, info *keyspace.HostInfo) {
	t.Helper()
	e.register(t, info, statusDoc(info), 600)
}

// putLeased writes key under a new lease of ten minutes, as an agent
// writes its status.
func (e *env) putLeased(t *testing.T, key, value string) {
	t.Helper()
	ctx := etcdtest.Ctx(t, 10*time.Second)
	lease, err := e.cli.Grant(ctx, 600)
	require.NoError(t, err)
	_, err = e.cli.Put(ctx, key, value, clientv3.WithLease(lease.ID))
	require.NoError(t, err)
}

func (e *env) put(t *testing.T, key, value string) int64 {
	t.Helper()
	resp, err := e.cli.Put(etcdtest.Ctx(t, 10*time.Second), key, value)
	require.NoError(t, err)
	return resp.Header.Revision
}

func encode(t *testing.T, v any) string {
	t.Helper()
	s, err := keyspace.Encode(v)
	require.NoError(t, err)
	return s
}

// waitHealth waits until the fleet reports the host with health want.
func waitHealth(t *testing.T, f *Fleet, hostID, want string, within time.Duration) api.Host {
	t.Helper()
	var h api.Host
	require.Eventually(t, func() bool {
		var err error
		h, err = f.GetHost(context.Background(), hostID)
		return err == nil && h.Health == want
	}, within, 10*time.Millisecond, "host %q never became %s (last: %+v)",
		hostID, want, h)
	return h
}

// fakeClock is a settable Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// assertLogged waits until exactly n log lines contain every one of
// parts. A change can reach the view through the watch before the
// goroutine that committed it has written its log line, so a test that
// saw the change must still wait for the line.
func assertLogged(t *testing.T, log fmt.Stringer, n int, parts ...string) {
	t.Helper()
	assert.Eventually(t, func() bool { return countLines(log.String(), parts...) >= n },
		5*time.Second, 5*time.Millisecond, "log lines with %q", parts)
	assert.Equal(t, n, countLines(log.String(), parts...), "log lines with %q", parts)
}

// countLines returns how many log lines contain every one of parts.
func countLines(log string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

func ctx(t *testing.T) context.Context {
	return etcdtest.Ctx(t, 30*time.Second)
}

// recordingObserver counts the events it receives by name.
type recordingObserver struct {
	mu     sync.Mutex
	events map[string]int
}

func (o *recordingObserver) add(event string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.events == nil {
		o.events = make(map[string]int)
	}
	o.events[event]++
}

func (o *recordingObserver) count(event string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return uint64(o.events[event])
}

func (o *recordingObserver) HostHealthChanged(_, _, to string) { o.add("health " + to) }
func (o *recordingObserver) CASConflict(op string)             { o.add("conflict " + op) }
func (o *recordingObserver) Relisted(reason string)            { o.add("relist " + reason) }
func (o *recordingObserver) EtcdError(op string)               { o.add("etcd " + op) }

func (o *recordingObserver) AllocationFinished(
	outcome string, _ int, _ time.Duration,
) {
	o.add("allocation " + outcome)
}
