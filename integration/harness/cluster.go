package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClusterConfig sets up an etcd cluster. The zero value is three members
// with etcd's default timing.
type ClusterConfig struct {
	// Size is the number of members; 0 means 3.
	Size int
	// HeartbeatInterval and ElectionTimeout are etcd's raft timing; 0
	// keeps etcd's defaults of 100 ms and 1 s, which stay stable on a
	// loaded two-core machine. The election timeout also sets etcd's
	// minimum lease TTL (about 1.5 times the timeout).
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// Fsync keeps etcd's fsync on every write. It is off by default
	// because the suite kills processes, not machines: written data stays
	// in the page cache either way, and a slow disk shared with parallel
	// builds would otherwise delay heartbeats into elections.
	Fsync bool
	// LogLevel is etcd's --log-level; empty means "info".
	LogLevel string
	// ExtraArgs are appended to every member's command line.
	ExtraArgs []string
}

// Timeouts of cluster operations.
const (
	// ClusterStartTimeout bounds the wait for a new or restarted cluster
	// to serve and elect a leader.
	ClusterStartTimeout = 30 * time.Second
	// memberStopTimeout bounds a graceful stop. A leader hands over
	// leadership before it exits, which takes up to an election timeout.
	memberStopTimeout = 15 * time.Second
	// statusTimeout bounds one Status call to one member.
	statusTimeout = time.Second
)

// ErrNoLeader is returned by EtcdCluster.Leader when no running member
// reports itself as leader.
var ErrNoLeader = errors.New("no etcd member is leader")

// member is one etcd process and what it keeps across restarts.
type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	proc      *Process
}

// EtcdCluster is a real etcd cluster of separate etcd-member processes on
// 127.0.0.1. Each member keeps its ports and data folder across restarts.
type EtcdCluster struct {
	t       testing.TB
	cfg     ClusterConfig
	binary  string
	token   string
	members []*member
	client  *clientv3.Client
}

// StartCluster builds the etcd-member binary if needed, starts the
// members, and waits until every member serves and one is leader. The
// cluster, its client and every member process end with the test.
func StartCluster(t testing.TB, cfg ClusterConfig) *EtcdCluster {
	t.Helper()
	if cfg.Size == 0 {
		cfg.Size = 3
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	c := &EtcdCluster{
		t:      t,
		cfg:    cfg,
		binary: Binary(t, EtcdMemberPackage),
		token:  fmt.Sprintf("remotegpu-it-%d", time.Now().UnixNano()),
	}

	ports := FreePorts(t, 2*cfg.Size)
	for i := range cfg.Size {
		c.members = append(c.members, &member{
			name:      "m" + strconv.Itoa(i),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			dataDir:   filepath.Join(t.TempDir(), "m"+strconv.Itoa(i)),
		})
	}

	for i, m := range c.members {
		m.proc = StartProcess(t, ProcessConfig{
			Name: "etcd-" + m.name,
			Path: c.binary,
			Args: c.args(i, "new"),
		})
	}
	c.client = NewClient(t, c.Endpoints())
	c.waitServing(ClusterStartTimeout, c.indexes()...)
	c.WaitLeader(ClusterStartTimeout)
	return c
}

// args returns the command line of member i.
func (c *EtcdCluster) args(i int, state string) []string {
	m := c.members[i]
	peers := make([]string, len(c.members))
	for j, o := range c.members {
		peers[j] = o.name + "=" + o.peerURL
	}
	args := []string{
		"--name=" + m.name,
		"--data-dir=" + m.dataDir,
		"--listen-client-urls=" + m.clientURL,
		"--advertise-client-urls=" + m.clientURL,
		"--listen-peer-urls=" + m.peerURL,
		"--initial-advertise-peer-urls=" + m.peerURL,
		"--initial-cluster=" + strings.Join(peers, ","),
		"--initial-cluster-token=" + c.token,
		"--initial-cluster-state=" + state,
		"--log-level=" + c.cfg.LogLevel,
	}
	if c.cfg.HeartbeatInterval > 0 {
		args = append(args, "--heartbeat-interval="+
			strconv.FormatInt(c.cfg.HeartbeatInterval.Milliseconds(), 10))
	}
	if c.cfg.ElectionTimeout > 0 {
		args = append(args, "--election-timeout="+
			strconv.FormatInt(c.cfg.ElectionTimeout.Milliseconds(), 10))
	}
	if !c.cfg.Fsync {
		args = append(args, "--unsafe-no-fsync")
	}
	return append(args, c.cfg.ExtraArgs...)
}

// NewClient returns an etcd client for endpoints that is closed when the
// test ends.
func NewClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() {
		if err := cli.Close(); err != nil &&
			!errors.Is(err, context.Canceled) {
			t.Errorf("close etcd client: %v", err)
		}
	})
	return cli
}

// Size returns the number of members.
func (c *EtcdCluster) Size() int { return len(c.members) }

// Endpoints returns every member's client URL, in member order.
func (c *EtcdCluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *EtcdCluster) Endpoint(i int) string { return c.members[i].clientURL }

// PeerURL returns member i's peer URL.
func (c *EtcdCluster) PeerURL(i int) string { return c.members[i].peerURL }

// DataDir returns member i's data folder.
func (c *EtcdCluster) DataDir(i int) string { return c.members[i].dataDir }

// Process returns member i's process, for signals such as Pause.
func (c *EtcdCluster) Process(i int) *Process { return c.members[i].proc }

// Client returns a client connected to every member; it fails over by
// itself when a member goes down.
func (c *EtcdCluster) Client() *clientv3.Client { return c.client }

// Running reports whether member i's process is running.
func (c *EtcdCluster) Running(i int) bool { return c.members[i].proc.Running() }

func (c *EtcdCluster) indexes() []int {
	idx := make([]int, len(c.members))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// status calls Status on member i.
func (c *EtcdCluster) status(i int) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	return c.client.Status(ctx, c.members[i].clientURL)
}

// Leader returns the index of the running member that reports itself as
// leader, or ErrNoLeader.
func (c *EtcdCluster) Leader() (int, error) {
	for i, m := range c.members {
		if !m.proc.Running() {
			continue
		}
		st, err := c.status(i)
		if err != nil {
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, ErrNoLeader
}

// WaitLeader waits until a member is leader and returns its index. It
// fails the test after timeout.
func (c *EtcdCluster) WaitLeader(timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		i, err := c.Leader()
		if err == nil {
			return i
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd cluster: %v within %s", err, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitServing waits until each listed member responds to a Status call.
// A member serves clients only once it has joined a quorum.
func (c *EtcdCluster) waitServing(timeout time.Duration, members ...int) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, i := range members {
		for {
			_, err := c.status(i)
			if err == nil {
				break
			}
			if !c.members[i].proc.Running() {
				c.t.Fatalf("etcd member %d exited (%s) before serving",
					i, c.members[i].proc.current().status)
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("etcd member %d not serving within %s: %v",
					i, timeout, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Kill ends member i with SIGKILL, as a crash would.
func (c *EtcdCluster) Kill(i int) {
	c.t.Helper()
	c.members[i].proc.Kill()
}

// Stop ends member i with SIGTERM and waits for its exit. A leader hands
// over leadership first.
func (c *EtcdCluster) Stop(i int) {
	c.t.Helper()
	c.members[i].proc.Terminate(memberStopTimeout)
}

// Start restarts stopped or killed member i with its data folder and
// ports. It waits until the member serves when the running members,
// including it, form a quorum; otherwise it returns once the process runs.
func (c *EtcdCluster) Start(i int) {
	c.t.Helper()
	c.members[i].proc.RestartArgs(c.args(i, "existing"))
	if c.runningCount() > len(c.members)/2 {
		c.waitServing(ClusterStartTimeout, i)
	}
}

func (c *EtcdCluster) runningCount() int {
	n := 0
	for _, m := range c.members {
		if m.proc.Running() {
			n++
		}
	}
	return n
}

// StopAll stops every running member with SIGTERM: the followers at once,
// then the leader. A leader stopping beside its followers would wait
// several seconds to hand leadership to a member that is going away.
func (c *EtcdCluster) StopAll() {
	c.t.Helper()
	leader, err := c.Leader()
	if err != nil {
		leader = -1
	}
	for i, m := range c.members {
		if i != leader && m.proc.Running() {
			// An error means the process already exited, which the
			// wait below reports.
			_ = m.proc.Signal(syscall.SIGTERM)
		}
	}
	for i, m := range c.members {
		if i != leader {
			m.proc.Terminate(memberStopTimeout)
		}
	}
	if leader >= 0 {
		c.members[leader].proc.Terminate(memberStopTimeout)
	}
}

// StartAll starts every member that is not running and waits until all
// serve and one is leader.
func (c *EtcdCluster) StartAll() {
	c.t.Helper()
	for i, m := range c.members {
		if !m.proc.Running() {
			m.proc.RestartArgs(c.args(i, "existing"))
		}
	}
	c.waitServing(ClusterStartTimeout, c.indexes()...)
	c.WaitLeader(ClusterStartTimeout)
}
