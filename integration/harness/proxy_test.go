package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
)

// startEcho runs a TCP echo server until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func echoRoundTrip(c net.Conn, msg string) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	if err := c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func TestProxyForwardsAndHalfCloses(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	c := dial(t, p.Addr())

	got, err := echoRoundTrip(c, "hello")
	require.NoError(t, err)
	require.Equal(t, "hello", got)
	require.Equal(t, 1, p.Stats().Forwarding)

	// After the client's half-close the echo server ends the connection.
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool { return p.Stats().Forwarding == 0 },
		2*time.Second, 10*time.Millisecond)
}

func TestProxyCutParksThenRestores(t *testing.T) {
	p := StartProxy(t, "http://"+startEcho(t))
	before := dial(t, p.Addr())
	_, err := echoRoundTrip(before, "a")
	require.NoError(t, err)

	p.Cut()

	// The open connection is dropped.
	require.NoError(t, before.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = before.Read(make([]byte, 1))
	require.Error(t, err)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(),
		"dropped, not timed out: %v", err)

	// A new connection is accepted but gets no response.
	during := dial(t, p.Addr())
	_, err = echoRoundTrip(during, "b")
	require.ErrorAs(t, err, &netErr)
	require.True(t, netErr.Timeout())
	require.Eventually(t, func() bool { return p.Stats().Parked == 1 },
		time.Second, 10*time.Millisecond)

	// Restore forwards the parked connection with what it sent.
	p.Restore()
	require.NoError(t, during.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, 1)
	_, err = io.ReadFull(during, buf)
	require.NoError(t, err)
	require.Equal(t, "b", string(buf))
	require.Zero(t, p.Stats().Parked)
}

func TestProxyRejectClosesNewConnections(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	p.Reject()
	c := dial(t, p.Addr())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)

	p.Restore()
	got, err := echoRoundTrip(dial(t, p.Addr()), "ok")
	require.NoError(t, err)
	require.Equal(t, "ok", got)
}

// requireCutOff checks that no put through cli succeeds and that puts end
// in a timeout. Until the client notices that its connections dropped, a
// put may fail at once with Unavailable instead.
func requireCutOff(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	Await(t, 10*time.Second, 10*time.Millisecond, func() bool {
		err := putWithin(cli, "/cut", time.Second)
		require.Error(t, err, "put through a cut proxy")
		return errors.Is(err, context.DeadlineExceeded)
	}, "puts through a cut proxy time out")
}

func TestProxyCutsEtcdClient(t *testing.T) {
	member := etcdtest.Start(t)
	p := StartProxy(t, member.Endpoint)
	cli := NewClient(t, []string{p.URL()})
	requirePut(t, cli, "/through-proxy", "1", 10*time.Second)

	p.Cut()
	require.Zero(t, p.Stats().Forwarding)
	requireCutOff(t, cli)
	require.Positive(t, p.Stats().Parked)

	// The member itself is fine; only the path through the proxy is cut.
	_, err := member.Client.Put(Ctx(t, 5*time.Second), "/direct", "1")
	require.NoError(t, err)

	restoredAt := time.Now()
	p.Restore()
	requirePut(t, cli, "/restored", "1", 15*time.Second)
	t.Logf("client through proxy recovered %s after restore",
		time.Since(restoredAt).Round(time.Millisecond))
}
