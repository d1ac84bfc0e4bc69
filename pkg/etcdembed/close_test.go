package etcdembed_test

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/testcerts"
)

// newClient connects to endpoint, with TLS when tlsConfig is not nil.
func newClient(t *testing.T, endpoint string, tlsConfig *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		TLS:         tlsConfig,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// holdStreams opens a watch and a lease keepalive on cli, the two streams
// an agent keeps open, and waits until the watch is established.
func holdStreams(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := etcdtest.Ctx(t, 60*time.Second)
	watch := cli.Watch(ctx, "/", clientv3.WithPrefix(),
		clientv3.WithCreatedNotify())
	select {
	case resp := <-watch:
		require.True(t, resp.Created, "first watch response: %+v", resp)
	case <-time.After(10 * time.Second):
		t.Fatal("watch was not created within 10 s")
	}

	lease, err := cli.Grant(ctx, 60)
	require.NoError(t, err)
	keepAlive, err := cli.KeepAlive(ctx, lease.ID)
	require.NoError(t, err)
	select {
	case <-keepAlive:
	case <-time.After(10 * time.Second):
		t.Fatal("no keepalive response within 10 s")
	}
}

func TestCloseKeepsLeasesAcrossRestart(t *testing.T) {
	t.Parallel()
	const ttl = 3

	tests := []struct {
		name string
		tls  bool
	}{
		{"plain", false},
		{"tls", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var clientTLS *tls.Config
			c := etcdtest.StartWith(t, func(cfg *etcdembed.Config) {
				if !tt.tls {
					return
				}
				certs := testcerts.Generate(t, t.TempDir())
				cfg.ClientURL = fmt.Sprintf("https://127.0.0.1:%d",
					etcdtest.FreePort(t))
				cfg.CertFile, cfg.KeyFile = certs.ServerCert, certs.ServerKey
				cfg.ClientCAFile = certs.CA
				info := transport.TLSInfo{CertFile: certs.ClientCert,
					KeyFile: certs.ClientKey, TrustedCAFile: certs.CA}
				var err error
				clientTLS, err = info.ClientConfig()
				require.NoError(t, err)
			})
			cli := newClient(t, c.Endpoint, clientTLS)
			ctx := etcdtest.Ctx(t, 60*time.Second)

			lease, err := cli.Grant(ctx, ttl)
			require.NoError(t, err)
			_, err = cli.Put(ctx, "/alloc-lease", "x",
				clientv3.WithLease(lease.ID))
			require.NoError(t, err)

			// A second client holds the streams that made etcd wait for
			// its request timeout (about 7 s) before it closed, longer
			// than the lease's TTL.
			holdStreams(t, newClient(t, c.Endpoint, clientTLS))

			// Use up part of the TTL, as a holder between two renewals.
			time.Sleep(time.Second)
			start := time.Now()
			c.Stop()
			closeTook := time.Since(start)
			assert.Less(t, closeTook, 3*time.Second, "Close waited for "+
				"the open streams")

			c.Restart()
			resp, err := cli.TimeToLive(ctx, lease.ID, clientv3.WithAttachedKeys())
			require.NoError(t, err)
			require.Positive(t, resp.TTL, "lease expired across the restart")
			// etcd's new leader renews each lease to its full TTL plus
			// an election timeout (1 s).
			assert.GreaterOrEqual(t, resp.TTL, int64(ttl-1),
				"TTL was not renewed after the restart")
			assert.Equal(t, int64(ttl), resp.GrantedTTL)
			require.Len(t, resp.Keys, 1)
			assert.Equal(t, "/alloc-lease", string(resp.Keys[0]))
		})
	}
}

func TestCloseTwiceIsSafe(t *testing.T) {
	c := etcdtest.Start(t)
	holdStreams(t, newClient(t, c.Endpoint, nil))
	srv := c.Server
	srv.Close()
	srv.Close()
	c.Server = nil

	// The data dir and ports are free again.
	c.Restart()
	_, err := c.Client.Put(etcdtest.Ctx(t, 20*time.Second), "/k", "v")
	require.NoError(t, err)
}
