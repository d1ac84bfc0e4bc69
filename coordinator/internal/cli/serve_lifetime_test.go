package cli

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestServeLifetimeFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--lost-grace-period", "0s"}, "invalid --lost-grace-period 0s: must be positive"},
		{[]string{"--lost-grace-period", "-1m"}, "invalid --lost-grace-period -1m0s"},
		{[]string{"--lost-release-after", "-1s"}, "invalid --lost-release-after -1s"},
	}
	for _, tc := range cases {
		args := append([]string{"serve", "--data-dir", dir}, tc.args...)
		code, stdout, stderr := run(t, args...)
		assert.Equal(t, 2, code, "args %v", tc.args)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, tc.want, "args %v", tc.args)
	}
}

// putHost writes a host's info and its status under a lease of ttl
// seconds that no process keeps alive, and returns the lease.
func putHost(t *testing.T, cli *clientv3.Client, ks keyspace.Keyspace,
	id string, ttl int64) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	info := keyspace.HostInfo{
		ID: id, Name: id, IPAddress: "10.1.2.3", TotalCPU: 16, TotalMemory: 64 << 30,
		AgentVersion: "test", InstanceID: "run-1", RegisteredAt: time.Now(),
		GPUs: []keyspace.GPUInfo{{Index: 0, UUID: "GPU-" + id + "-0",
			Name: "NVIDIA A100", MemoryTotal: 80 << 30}},
	}
	used := int64(0)
	status := keyspace.HostStatus{InstanceID: "run-1", HeartbeatAt: time.Now(),
		GPUs: []keyspace.GPUStatus{{Index: 0, UUID: "GPU-" + id + "-0",
			MemoryUsed: &used, Health: keyspace.GPUHealthy}}}
	infoJSON, err := keyspace.Encode(info)
	require.NoError(t, err)
	statusJSON, err := keyspace.Encode(status)
	require.NoError(t, err)

	lease, err := cli.Grant(ctx, ttl)
	require.NoError(t, err)
	_, err = cli.Txn(ctx).Then(
		clientv3.OpPut(ks.HostInfo(id), infoJSON),
		clientv3.OpPut(ks.HostStatus(id), statusJSON, clientv3.WithLease(lease.ID)),
	).Commit()
	require.NoError(t, err)
	return lease.ID
}

// waitAllocationState polls the API until the allocation is in state
// want.
func waitAllocationState(t *testing.T, c *client.Client, s *runningServe,
	id, want string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a, err := c.GetAllocation(ctx, id)
		return err == nil && a.State == want
	}, within, 20*time.Millisecond, "allocation %s never became %s; log:\n%s",
		id, want, s.stderr.String())
}

func TestServeExpiresAndLosesAllocations(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.Start(t)
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	c := newClient(t, "http://"+listen)
	s := startServe(t, []string{
		"serve", "--listen", listen, "--etcd-endpoints", cluster.Endpoint,
		"--lost-grace-period", "1s", "--lost-release-after", "2s",
		"--default-allocation-ttl", "2s",
	})
	waitReady(t, c, s)

	ks, err := keyspace.New(keyspace.DefaultPrefix)
	require.NoError(t, err)
	keep := putHost(t, cluster.Client, ks, "gpu-1", 60)
	dies := putHost(t, cluster.Client, ks, "gpu-2", 60)
	require.Eventually(t, func() bool {
		hosts, err := c.ListHosts(context.Background())
		return err == nil && len(hosts) == 2
	}, 10*time.Second, 20*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ttl, _, err := c.Allocate(ctx, api.AllocationRequest{GPU: 1, Owner: "ttl"})
	require.NoError(t, err)
	assert.Equal(t, int64(2), ttl.TTLSeconds, "--default-allocation-ttl")
	onDying, _, err := c.Allocate(ctx, api.AllocationRequest{GPU: 1,
		TTLSeconds: 60, Owner: "lost"})
	require.NoError(t, err)
	require.NotEqual(t, ttl.HostID, onDying.HostID)

	// Kill the host of the second allocation.
	if onDying.HostID == "gpu-1" {
		keep, dies = dies, keep
	}
	_, err = cluster.Client.Revoke(ctx, dies)
	require.NoError(t, err)

	waitAllocationState(t, c, s, ttl.ID, keyspace.StateExpired, 8*time.Second)
	waitAllocationState(t, c, s, onDying.ID, keyspace.StateLost, 8*time.Second)
	waitAllocationState(t, c, s, onDying.ID, keyspace.StateReleased, 8*time.Second)

	expired, err := c.ListAllocations(ctx, client.AllocationFilter{
		State: keyspace.StateExpired})
	require.NoError(t, err)
	require.Len(t, expired, 1)
	assert.Equal(t, ttl.ID, expired[0].ID)
	_, err = cluster.Client.Revoke(ctx, keep)
	require.NoError(t, err)

	require.Equal(t, 0, s.stop(t))
	log := s.stderr.String()
	assert.Contains(t, log, `msg="allocation expired" alloc_id=`+ttl.ID)
	assert.Contains(t, log, `msg="allocation lost" alloc_id=`+onDying.ID)
	assert.Contains(t, log, `msg="lost allocation released" alloc_id=`+onDying.ID)
}
