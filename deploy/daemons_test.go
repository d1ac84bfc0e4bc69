package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemon is a started daemon process.
type daemon struct {
	cmd    *exec.Cmd
	output *lockedBuffer
	done   chan error
}

// startDaemon starts binary with args and the extra environment env, and
// stops it, if still running, when the test ends.
func startDaemon(t *testing.T, binary string, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{
		cmd:    exec.Command(binary, args...),
		output: &lockedBuffer{},
		done:   make(chan error, 1),
	}
	d.cmd.Env = append(cleanEnv(), env...)
	d.cmd.Stdout = d.output
	d.cmd.Stderr = d.output
	require.NoError(t, d.cmd.Start())
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.done == nil {
			return
		}
		_ = d.cmd.Process.Kill()
		<-d.done
	})
	return d
}

// stop sends SIGTERM and returns the exit error, killing the process if it
// has not exited after timeout.
func (d *daemon) stop(t *testing.T, timeout time.Duration) error {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.done:
		d.done = nil
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit %s after SIGTERM; output:\n%s",
			d.cmd.Path, timeout, d.output.String())
		return nil
	}
}

func getJSON(url string, into any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if into == nil || resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(into)
}

// TestDaemonsRunAsTheirEtcdUsers runs the real daemons against an etcd set
// up by etcd-auth.sh, each logged in as the user the script created, and
// goes through registration, an allocation and a clean agent stop.
func TestDaemonsRunAsTheirEtcdUsers(t *testing.T) {
	t.Parallel()
	agentBin := buildDaemon(t, daemonCommands[0])
	coordinatorBin := buildDaemon(t, daemonCommands[1])

	f := newAuthFixture(t)
	f.init(t)
	h1File := f.passwordFile(t, "h1", "Agent-h1-pw")
	f.mustRun(t, "add-host", "h1", "--password-file", h1File)

	// Each daemon gets its own sd_notify socket and a 1 s watchdog, as
	// systemd gives them with Type=notify and WatchdogSec.
	coordinatorNotify := listenNotify(t, "coordinator.sock")
	agentNotify := listenNotify(t, "agent.sock")

	apiURL := "http://127.0.0.1:" + strconv.Itoa(etcdtest.FreePort(t))
	coordinator := startDaemon(t, coordinatorBin, coordinatorNotify.env(), "serve",
		"--etcd-endpoints", f.cluster.Endpoint,
		"--etcd-user", "remotegpu-coordinator", "--etcd-password-file", f.coordFile,
		"--listen", apiURL[len("http://"):])
	require.Eventually(t, func() bool {
		code, _ := getJSON(apiURL+"/readyz", nil)
		return code == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "coordinator not ready:\n%s", coordinator.output)

	agent := startDaemon(t, agentBin, agentNotify.env(), "run",
		"--etcd-endpoints", f.cluster.Endpoint,
		"--etcd-user", "remotegpu-agent-h1", "--etcd-password-file", h1File,
		"--host-id", "h1", "--gpu-backend", "mock-dgxa100",
		"--ttl", "3s", "--interval", "1s")
	require.Eventually(t, func() bool {
		var host api.Host
		code, err := getJSON(apiURL+"/v1/hosts/h1", &host)
		return err == nil && code == http.StatusOK && host.Health == api.HealthHealthy
	}, 30*time.Second, 100*time.Millisecond, "host h1 not healthy; agent output:\n%s", agent.output)

	// The coordinator writes the ledger and the allocation record.
	body, err := json.Marshal(api.AllocationRequest{CPU: 1, Memory: 1 << 20, GPU: 1, Owner: "deploy-test"})
	require.NoError(t, err)
	resp, err := http.Post(apiURL+"/v1/allocations", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	var alloc api.Allocation
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&alloc))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "allocation: %+v\n%s", alloc, coordinator.output)
	assert.Equal(t, "h1", alloc.HostID)
	assert.Len(t, alloc.GPUs, 1)

	t.Run("coordinator notifies systemd", func(t *testing.T) {
		assertNotifies(t, daemonCommands[1], coordinatorNotify)
	})
	t.Run("agent notifies systemd", func(t *testing.T) {
		assertNotifies(t, daemonCommands[0], agentNotify)
	})

	// A clean stop puts info with stopped_at and deletes status.
	require.NoError(t, agent.stop(t, 15*time.Second), "agent exit; output:\n%s", agent.output)
	assertStoppedCleanly(t, f, "h1")

	require.NoError(t, coordinator.stop(t, 30*time.Second), "coordinator exit; output:\n%s", coordinator.output)
	for name, d := range map[string]*daemon{"agent": agent, "coordinator": coordinator} {
		assert.NotContains(t, d.output.String(), "permission denied", "%s output", name)
	}
}

func assertStoppedCleanly(t *testing.T, f *authFixture, hostID string) {
	t.Helper()
	coord := f.mustClient(t, "remotegpu-coordinator", f.coordFile)
	ks, err := keyspace.New(keyspace.DefaultPrefix)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := coord.Get(ctx, ks.HostStatus(hostID))
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "status key survived a clean stop")

	resp, err = coord.Get(ctx, ks.HostInfo(hostID))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "info key missing")
	info, err := keyspace.DecodeHostInfo(ks.HostInfo(hostID), resp.Kvs[0].Value)
	require.NoError(t, err)
	assert.NotNil(t, info.StoppedAt, fmt.Sprintf("info of %s lacks stopped_at", hostID))
}

// notifySocket is a fake systemd notification socket that records every
// datagram a daemon sends to it.
type notifySocket struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	// mu guards messages.
	mu       sync.Mutex
	messages []string
}

// listenNotify opens a notification socket in a temporary folder and
// closes it when the test ends.
func listenNotify(t *testing.T, name string) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	n := &notifySocket{path: path, conn: conn, done: make(chan struct{})}
	go n.read()
	t.Cleanup(func() {
		_ = conn.Close()
		<-n.done
	})
	return n
}

func (n *notifySocket) read() {
	defer close(n.done)
	buf := make([]byte, 4096)
	for {
		size, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		n.mu.Lock()
		n.messages = append(n.messages, strings.Split(string(buf[:size]), "\n")...)
		n.mu.Unlock()
	}
}

// env returns what systemd sets for a Type=notify unit with WatchdogSec=1s.
func (n *notifySocket) env() []string {
	return []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=1000000"}
}

// count returns how many received lines equal message.
func (n *notifySocket) count(message string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	for _, m := range n.messages {
		if m == message {
			total++
		}
	}
	return total
}

// linksSdNotify reports whether a daemon's main package imports go-systemd's
// sd_notify package.
func linksSdNotify(t *testing.T, d daemonCommand) bool {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "./"+d.pkg)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps %s", d.pkg)
	return slices.Contains(strings.Fields(string(out)), sdNotifyPackage)
}

const sdNotifyPackage = "github.com/coreos/go-systemd/v22/daemon"

// assertNotifies checks the contract of the units' Type=notify and
// WatchdogSec: READY=1 once serving, then a watchdog ping at least every
// half interval.
func assertNotifies(t *testing.T, d daemonCommand, n *notifySocket) {
	t.Helper()
	if !linksSdNotify(t, d) {
		t.Skipf("%s does not import %s yet, so it cannot send READY=1 "+
			"as Type=notify requires", d.pkg, sdNotifyPackage)
	}
	assert.Eventually(t, func() bool { return n.count("READY=1") == 1 },
		10*time.Second, 50*time.Millisecond, "no READY=1 on the notify socket")
	before := n.count("WATCHDOG=1")
	assert.Eventually(t, func() bool { return n.count("WATCHDOG=1") >= before+2 },
		3*time.Second, 50*time.Millisecond, "fewer than 2 watchdog pings in 3 s with WatchdogSec=1s")
}
