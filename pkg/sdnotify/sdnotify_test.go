package sdnotify

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// socket is a fake systemd notification socket.
type socket struct {
	conn *net.UnixConn
	done chan struct{}

	// mu guards messages.
	mu       sync.Mutex
	messages []string
}

// listen opens a notification socket and points NOTIFY_SOCKET at it.
func listen(t *testing.T, watchdog string) *socket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram",
		&net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	s := &socket{conn: conn, done: make(chan struct{})}
	go s.read()
	t.Cleanup(func() {
		_ = conn.Close()
		<-s.done
	})
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", watchdog)
	return s
}

func (s *socket) read() {
	defer close(s.done)
	buf := make([]byte, 4096)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.messages = append(s.messages, string(buf[:n]))
		s.mu.Unlock()
	}
}

func (s *socket) count(msg string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, m := range s.messages {
		if m == msg {
			total++
		}
	}
	return total
}

func TestReadySentOnce(t *testing.T) {
	s := listen(t, "")
	n := New(nil)
	n.Ready()
	n.Ready()
	n.Status("serving 3 hosts")
	n.Stopping()

	require.Eventually(t, func() bool { return s.count("STOPPING=1") == 1 },
		2*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, s.count("READY=1"))
	assert.Equal(t, 1, s.count("STATUS=serving 3 hosts"))
}

func TestNoSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := New(nil)
	n.Ready()
	n.Stopping()

	_, ok := WatchdogInterval()
	assert.False(t, ok)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Watchdog(context.Background(), func(context.Context) error { return nil })
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watchdog did not return without WATCHDOG_USEC")
	}
}

func TestWatchdogPingsOnlyWhileCheckPasses(t *testing.T) {
	s := listen(t, "100000") // 100 ms, so pings every 50 ms
	interval, ok := WatchdogInterval()
	require.True(t, ok)
	assert.Equal(t, 50*time.Millisecond, interval)

	var mu sync.Mutex
	failing := false
	check := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("loop stuck")
		}
		return nil
	}

	var logs strings.Builder
	var logMu sync.Mutex
	n := New(newTestLogger(&logMu, &logs))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Watchdog(ctx, check) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	require.Eventually(t, func() bool { return s.count("WATCHDOG=1") >= 3 },
		2*time.Second, 10*time.Millisecond)

	mu.Lock()
	failing = true
	mu.Unlock()
	// Let a ping that was in flight arrive, then expect silence.
	time.Sleep(3 * interval)
	stalled := s.count("WATCHDOG=1")
	time.Sleep(4 * interval)
	assert.Equal(t, stalled, s.count("WATCHDOG=1"),
		"pings continued while the check failed")

	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	assert.Equal(t, 1, strings.Count(out, "loop stuck"),
		"a repeated failure is logged once; logs:\n%s", out)

	mu.Lock()
	failing = false
	mu.Unlock()
	require.Eventually(t, func() bool { return s.count("WATCHDOG=1") > stalled },
		2*time.Second, 10*time.Millisecond)
}

func TestProgressCheck(t *testing.T) {
	now := time.Unix(1000, 0)
	p := NewProgress(func() time.Time { return now })
	require.NoError(t, p.Check(time.Second))

	now = now.Add(2 * time.Second)
	err := p.Check(time.Second)
	require.ErrorIs(t, err, ErrStalled)
	assert.Contains(t, err.Error(), "no progress for 2s")

	p.Mark()
	assert.NoError(t, p.Check(time.Second))
}
