package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestClusterSurvivesLeaderKill(t *testing.T) {
	SkipShort(t)
	c := StartCluster(t, ClusterConfig{})
	require.Equal(t, 3, c.Size())
	require.Len(t, c.Endpoints(), 3)

	leader, err := c.Leader()
	require.NoError(t, err)
	requirePut(t, c.Client(), "/before", "1", 10*time.Second)

	// A new leader must come within a few election timeouts.
	killedAt := time.Now()
	c.Kill(leader)
	require.False(t, c.Running(leader))
	next := c.WaitLeader(10 * time.Second)
	elected := time.Since(killedAt)
	t.Logf("new leader m%d %s after killing m%d", next, elected, leader)
	require.NotEqual(t, leader, next)
	require.Less(t, elected, 10*time.Second)

	// The shared client fails over to the remaining members.
	requirePut(t, c.Client(), "/after", "1", 10*time.Second)

	// The killed member rejoins with its data and catches up.
	c.Start(leader)
	require.True(t, c.Running(leader))
	own := NewClient(t, []string{c.Endpoint(leader)})
	require.Eventually(t, func() bool {
		resp, err := own.Get(Ctx(t, time.Second), "/after",
			clientv3.WithSerializable())
		return err == nil && len(resp.Kvs) == 1
	}, 10*time.Second, 100*time.Millisecond)
}

func TestClusterStopAllStartAllKeepsData(t *testing.T) {
	SkipShort(t)
	c := StartCluster(t, ClusterConfig{})
	requirePut(t, c.Client(), "/kept", "value", 10*time.Second)

	c.StopAll()
	for i := range c.Size() {
		require.False(t, c.Running(i), "member %d", i)
	}
	_, err := c.Leader()
	require.ErrorIs(t, err, ErrNoLeader)

	c.StartAll()
	resp, err := c.Client().Get(Ctx(t, 10*time.Second), "/kept")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "value", string(resp.Kvs[0].Value))
}

func TestClusterStartWithoutQuorumReturns(t *testing.T) {
	SkipShort(t)
	c := StartCluster(t, ClusterConfig{})
	c.Stop(0)
	c.Stop(1)

	// One member of three cannot serve; Start must not wait for it.
	c.Kill(2)
	start := time.Now()
	c.Start(2)
	require.Less(t, time.Since(start), 5*time.Second)
	require.True(t, c.Running(2))

	c.Start(0)
	c.WaitLeader(ClusterStartTimeout)
	requirePut(t, c.Client(), "/quorum", "1", 10*time.Second)
}

func TestClusterCutOffThroughProxies(t *testing.T) {
	SkipShort(t)
	c := StartCluster(t, ClusterConfig{})
	ps := StartProxies(t, c.Endpoints())
	require.Len(t, ps.URLs(), 3)
	cli := NewClient(t, ps.URLs())
	requirePut(t, cli, "/via-proxies", "1", 10*time.Second)

	ps.Cut()
	requireCutOff(t, cli)

	// The cluster itself keeps serving its direct clients.
	requirePut(t, c.Client(), "/direct", "1", 5*time.Second)

	ps.Restore()
	requirePut(t, cli, "/restored", "1", 15*time.Second)
}
