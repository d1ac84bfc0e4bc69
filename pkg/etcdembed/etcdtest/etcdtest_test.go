package etcdtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
)

func TestStartPutGetRestart(t *testing.T) {
	c := Start(t)
	ctx := Ctx(t, 20*time.Second)

	_, err := c.Client.Put(ctx, "/k", "v")
	require.NoError(t, err)

	c.Restart()
	resp, err := c.Client.Get(ctx, "/k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v", string(resp.Kvs[0].Value))
}

func TestSecondServerOnSameDirFailsFast(t *testing.T) {
	c := Start(t)
	cfg := c.Config
	cfg.ClientURL = "http://127.0.0.1:1"
	start := time.Now()
	_, err := etcdembed.Start(cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), cfg.DataDir)
	require.Contains(t, err.Error(), "in use by another process")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestPortInUseNamesPort(t *testing.T) {
	c := Start(t)
	cfg := c.Config
	cfg.DataDir = t.TempDir()
	_, err := etcdembed.Start(cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), c.Endpoint[len("http://"):])
}
