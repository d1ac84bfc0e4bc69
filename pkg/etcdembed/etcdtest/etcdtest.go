// Package etcdtest starts a real embedded etcd member for tests, on
// 127.0.0.1 ports picked free, with its data in the test's temporary folder.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
)

// Cluster is one embedded member and a client connected to it.
type Cluster struct {
	Server   *etcdembed.Server
	Config   etcdembed.Config
	Endpoint string
	Client   *clientv3.Client
	t        testing.TB
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start launches a single-member etcd for the test and closes it, and its
// client, when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, nil)
}

// StartWith is Start with a hook that may change the member's
// configuration, such as its BcryptCost, before it starts. A nil adjust
// changes nothing.
func StartWith(t testing.TB, adjust func(*etcdembed.Config)) *Cluster {
	t.Helper()
	cfg := etcdembed.Config{
		Name:      "test",
		DataDir:   t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	c := &Cluster{Config: cfg, Endpoint: cfg.ClientURL, t: t}
	c.start()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{c.Endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	c.Client = cli
	t.Cleanup(func() {
		cli.Close()
		c.Stop()
	})
	return c
}

func (c *Cluster) start() {
	c.t.Helper()
	srv, err := etcdembed.Start(c.Config)
	require.NoError(c.t, err)
	c.Server = srv
}

// Stop closes the member; Restart starts it again on the same ports and
// data. The client reconnects by itself.
func (c *Cluster) Stop() {
	if c.Server != nil {
		c.Server.Close()
		c.Server = nil
	}
}

// Restart starts a stopped member again with the same data and ports.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Stop()
	c.start()
}

// Ctx returns a context that ends after d, cancelled when the test ends.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
