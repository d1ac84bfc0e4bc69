package heartbeat

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
)

const recoveredMsg = "status writes succeed again after etcd errors"

// recoveryLine matches the line logged when status writes succeed again.
var recoveryLine = regexp.MustCompile(`level=INFO msg="` + recoveredMsg +
	`" host_id=(\S+) instance_id=\S+ outage=(\S+) failed_attempts=(\d+)`)

// waitForLog waits until the agent's log contains text.
func waitForLog(t *testing.T, a *testAgent, text string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		return strings.Contains(a.logs.String(), text)
	}, within, 20*time.Millisecond, "no %q in the log:\n%s", text, a.logs)
}

// assertRecoveryLogged checks the one line logged when status writes
// succeed again and returns its failed attempts.
func assertRecoveryLogged(t *testing.T, a *testAgent, hostID string) int {
	t.Helper()
	logs := a.logs.String()
	require.Equal(t, 1, strings.Count(logs, recoveredMsg), logs)
	m := recoveryLine.FindStringSubmatch(logs)
	require.NotNil(t, m, logs)
	assert.Equal(t, hostID, m[1])
	outage, err := time.ParseDuration(m[2])
	require.NoError(t, err)
	assert.Positive(t, outage)
	failed, err := strconv.Atoi(m[3])
	require.NoError(t, err)
	assert.GreaterOrEqual(t, failed, 1)
	return failed
}

func TestStatusWriteRecoveryLogged(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	// A TTL longer than the outage keeps the lease, so the same
	// registration writes again once etcd is back.
	a := newTestAgent(t, c.Client, "h-recover", func(cfg *Config) {
		cfg.TTL = 15 * time.Second
		cfg.StatusMaxInterval = 100 * time.Millisecond
	})
	a.start(t)
	lease := waitRegistered(t, c.Client, "h-recover", a.InstanceID(), 5*time.Second)
	assert.NotContains(t, a.logs.String(), recoveredMsg,
		"the first registration is no recovery")

	c.Stop()
	waitForLog(t, a, "write status; retrying", 10*time.Second)
	c.Restart()
	waitForLog(t, a, recoveredMsg, 15*time.Second)

	assertRecoveryLogged(t, a, "h-recover")
	assert.Equal(t, 1, a.obs.registrations(), "the registration survived")
	_, l := statusOf(t, c.Client, "h-recover")
	assert.Equal(t, lease, l)

	// Later writes that succeed log nothing more.
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, strings.Count(a.logs.String(), recoveredMsg))
}

func TestRecoveryAfterLeaseLostLogged(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	a := newTestAgent(t, c.Client, "h-relost", func(cfg *Config) {
		cfg.StatusMaxInterval = 100 * time.Millisecond
	})
	a.start(t)
	waitRegistered(t, c.Client, "h-relost", a.InstanceID(), 5*time.Second)

	// An outage longer than the TTL ends the registration, so the
	// status is written again by a new registration.
	c.Stop()
	waitForLog(t, a, "write status; retrying", 10*time.Second)
	waitForLog(t, a, "not registered; retrying", 10*time.Second)
	c.Restart()
	waitForLog(t, a, recoveredMsg, 15*time.Second)

	failed := assertRecoveryLogged(t, a, "h-relost")
	assert.GreaterOrEqual(t, failed, 2, "failed write and failed registration")
	assert.GreaterOrEqual(t, a.obs.registrations(), 2)
}

func TestUnreachableEtcdNamesEndpoints(t *testing.T) {
	t.Parallel()
	endpoint := "http://127.0.0.1:" + strconv.Itoa(etcdtest.FreePort(t))
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })

	a := newTestAgent(t, cli, "h-nowhere", nil)
	r := a.start(t)
	waitForLog(t, a, "not registered; retrying", 10*time.Second)
	assert.False(t, r.exited())

	logs := a.logs.String()
	assert.Contains(t, logs, "cannot reach etcd at "+endpoint+": ")
	assert.Contains(t, logs, "check that etcd runs there")
	assert.Contains(t, logs, "--etcd-endpoints (or REMOTEGPU_ETCD_ENDPOINTS)")
	assert.Contains(t, logs, "context deadline exceeded")
}
