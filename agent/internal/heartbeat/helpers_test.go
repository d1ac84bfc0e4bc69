package heartbeat

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTTL = 2 * time.Second

var testKeys = mustKeyspace("/hbtest")

func mustKeyspace(prefix string) keyspace.Keyspace {
	ks, err := keyspace.New(prefix)
	if err != nil {
		panic(err)
	}
	return ks
}

// host is a fake host whose CPU use the test sets.
type host struct {
	cpu atomic.Uint64 // math.Float64bits of the CPU percent
}

func (h *host) setCPU(p float64) { h.cpu.Store(math.Float64bits(p)) }

func (h *host) sample(context.Context) (keyspace.HostStatus, error) {
	return keyspace.HostStatus{
		CPUPercent:      math.Float64frombits(h.cpu.Load()),
		UsedMemory:      1 << 30,
		AvailableMemory: 3 << 30,
	}, nil
}

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu       sync.Mutex
	writes   []string
	leases   []clientv3.LeaseID
	lostErrs []error
}

func (r *recorder) Registered(l clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leases = append(r.leases, l)
}

func (r *recorder) RegistrationLost(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lostErrs = append(r.lostErrs, err)
}

func (r *recorder) StatusWritten(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, reason)
}

func (r *recorder) EtcdError(string, error) {}

func (r *recorder) writeReasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func (r *recorder) registrations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.leases)
}

// syncBuffer collects log output written from several goroutines.
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

type testAgent struct {
	*Agent
	host *host
	obs  *recorder
	logs *syncBuffer
}

func newTestAgent(t *testing.T, cli *clientv3.Client, hostID string,
	tweak func(*Config)) *testAgent {
	t.Helper()
	h := &host{}
	obs := &recorder{}
	logs := &syncBuffer{}
	cfg := Config{
		Client:   cli,
		Keyspace: testKeys,
		Info: keyspace.HostInfo{
			ID: hostID, Name: hostID, IPAddress: "127.0.0.1",
			TotalCPU: 4, TotalMemory: 4 << 30, GPUs: []keyspace.GPUInfo{},
			AgentVersion: "test",
		},
		Sample:            h.sample,
		TTL:               testTTL,
		Interval:          50 * time.Millisecond,
		StatusMaxInterval: time.Minute,
		ChangeThreshold:   5,
		Logger:            slog.New(slog.NewTextHandler(logs, nil)),
		Observer:          obs,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	a, err := New(cfg)
	require.NoError(t, err)
	return &testAgent{Agent: a, host: h, obs: obs, logs: logs}
}

// running is an agent whose Run executes in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// start runs the agent until stop is called or the test ends.
func (a *testAgent) start(t *testing.T) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = a.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its error and how long it took to return.
func (r *running) stop(t *testing.T) (error, time.Duration) {
	began := time.Now()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after cancel")
	}
	return r.err, time.Since(began)
}

// wait returns Run's error once it returns on its own within d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		t.Fatalf("Run still running after %s", d)
		return nil
	}
}

// exited reports whether Run has returned.
func (r *running) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func getKV(cli *clientv3.Client, key string) (*mvccpb.KeyValue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	return resp.Kvs[0], nil
}

// readStatus returns the host's decoded status and its lease, or nil.
func readStatus(cli *clientv3.Client,
	hostID string) (*keyspace.HostStatus, clientv3.LeaseID, error) {
	key := testKeys.HostStatus(hostID)
	kv, err := getKV(cli, key)
	if err != nil || kv == nil {
		return nil, 0, err
	}
	st, err := keyspace.DecodeHostStatus(key, kv.Value)
	return st, clientv3.LeaseID(kv.Lease), err
}

// statusOf is readStatus for direct assertions: an error fails the test.
func statusOf(t *testing.T, cli *clientv3.Client,
	hostID string) (*keyspace.HostStatus, clientv3.LeaseID) {
	t.Helper()
	st, lease, err := readStatus(cli, hostID)
	require.NoError(t, err)
	return st, lease
}

func infoOf(t *testing.T, cli *clientv3.Client, hostID string) *keyspace.HostInfo {
	t.Helper()
	key := testKeys.HostInfo(hostID)
	kv, err := getKV(cli, key)
	require.NoError(t, err)
	require.NotNil(t, kv, "info key %s missing", key)
	info, err := keyspace.DecodeHostInfo(key, kv.Value)
	require.NoError(t, err)
	return info
}

// waitRegistered waits until the host's status key carries instance's ID.
func waitRegistered(t *testing.T, cli *clientv3.Client, hostID, instance string,
	within time.Duration) clientv3.LeaseID {
	t.Helper()
	var lease clientv3.LeaseID
	require.Eventually(t, func() bool {
		st, l, err := readStatus(cli, hostID)
		lease = l
		return err == nil && st != nil && st.InstanceID == instance && l != 0
	}, within, 20*time.Millisecond, "host %s not registered by %s", hostID, instance)
	return lease
}

func leaseRemaining(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) int64 {
	t.Helper()
	resp, err := cli.TimeToLive(etcdtest.Ctx(t, 5*time.Second), id)
	require.NoError(t, err)
	return resp.TTL
}
