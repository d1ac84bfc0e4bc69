package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startSingleMember runs one etcd-member process as a one-member cluster
// and returns it with a client.
func startSingleMember(t *testing.T) (*Process, *clientv3.Client) {
	t.Helper()
	ports := FreePorts(t, 2)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	p := StartProcess(t, ProcessConfig{
		Name: "etcd-single",
		Path: Binary(t, EtcdMemberPackage),
		Args: []string{
			"--name=single",
			"--data-dir=" + filepath.Join(t.TempDir(), "single"),
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=single=" + peerURL,
			"--unsafe-no-fsync",
		},
	})
	cli := NewClient(t, []string{clientURL})
	requirePut(t, cli, "/ready", "1", 20*time.Second)
	return p, cli
}

// requirePut retries a put until it succeeds or within passes.
func requirePut(t *testing.T, cli *clientv3.Client, key, value string,
	within time.Duration) {
	t.Helper()
	var lastErr error
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, lastErr = cli.Put(ctx, key, value)
		return lastErr == nil
	}, within, 100*time.Millisecond, "put %s", key)
	require.NoError(t, lastErr)
}

func putWithin(cli *clientv3.Client, key string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := cli.Put(ctx, key, "v")
	return err
}

func TestProcessExitCodes(t *testing.T) {
	SkipShort(t)
	bin := Binary(t, EtcdMemberPackage)

	t.Run("version exits zero", func(t *testing.T) {
		p := StartProcess(t, ProcessConfig{Path: bin, Args: []string{"--version"}})
		st, err := p.Wait(10 * time.Second)
		require.NoError(t, err)
		require.Equal(t, 0, st.Code)
		require.Equal(t, syscall.Signal(0), st.Signal)
		require.Contains(t, p.Logs(), "etcd Version: 3.7.3")
		require.False(t, p.Running())
	})
	t.Run("unknown flag exits non-zero", func(t *testing.T) {
		p := StartProcess(t, ProcessConfig{Path: bin, Args: []string{"--bogus"}})
		st, err := p.Wait(10 * time.Second)
		require.NoError(t, err)
		require.Equal(t, 2, st.Code)
		require.Contains(t, p.LogTail(50), "flag provided but not defined")
	})
	t.Run("missing binary fails start", func(t *testing.T) {
		rec := &recordingTB{TB: t}
		func() {
			defer func() { _ = recover() }()
			StartProcess(rec, ProcessConfig{Path: filepath.Join(t.TempDir(), "nope")})
		}()
		require.True(t, rec.failed)
		require.Contains(t, rec.message, "nope")
	})
}

func TestProcessSignalsAndRestart(t *testing.T) {
	SkipShort(t)
	p, cli := startSingleMember(t)
	require.True(t, p.Running())
	require.Positive(t, p.PID())

	// A stopped process keeps its socket but responds to nothing.
	p.Pause()
	err := putWithin(cli, "/paused", 500*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	p.Resume()
	requirePut(t, cli, "/resumed", "1", 10*time.Second)

	// Terminate also ends a paused process.
	p.Pause()
	st := p.Terminate(15 * time.Second)
	require.False(t, p.Running())
	t.Logf("etcd after SIGTERM: %s", st)
	require.True(t, st.Code == 0 || st.Signal == syscall.SIGTERM,
		"got %s", st)

	// The restart keeps the data folder, so the key is still there.
	p.Restart()
	require.True(t, p.Running())
	requirePut(t, cli, "/after-restart", "1", 20*time.Second)
	resp, err := cli.Get(Ctx(t, 5*time.Second), "/resumed")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)

	st = p.Kill()
	require.Equal(t, syscall.SIGKILL, st.Signal)
	require.Equal(t, -1, st.Code)
	require.Error(t, p.Signal(syscall.SIGCONT), "signal after exit")
	require.Contains(t, p.Logs(), "=== harness:", "restart appends")
}

func TestProcessWaitLogAndHTTP(t *testing.T) {
	SkipShort(t)
	p, cli := startSingleMember(t)
	p.WaitLog("ready to serve client requests", 10*time.Second)
	WaitHTTPOK(t, cli.Endpoints()[0]+"/health", 10*time.Second)

	_, err := p.Wait(100 * time.Millisecond)
	require.ErrorIs(t, err, ErrWaitTimeout)
}

// recordingTB records a fatal failure instead of ending the test, so that
// tests can check what the harness reports. Its FailNow panics, which the
// caller recovers.
type recordingTB struct {
	testing.TB
	failed  bool
	message string
	logs    []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = true
	r.message = fmt.Sprintf(format, args...)
	panic(r)
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.failed = true
	r.message = fmt.Sprintf(format, args...)
}

func (r *recordingTB) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Log(args ...any) {
	r.logs = append(r.logs, fmt.Sprint(args...))
}
