package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Timing of the processes the scenarios start. The agents' TTL is etcd's
// minimum with default election settings, so faults show within seconds.
const (
	agentTTL      = 2 * time.Second
	agentInterval = 500 * time.Millisecond
	// agentStatusMax keeps status writes, and with them etcd revisions,
	// coming while nothing changes.
	agentStatusMax = 2 * time.Second

	// startTimeout bounds the start of a coordinator or an agent's first
	// registration.
	startTimeout = 20 * time.Second
	// pollInterval is how often scenarios poll the coordinator API; it
	// bounds the accuracy of the measured times.
	pollInterval = 50 * time.Millisecond
	// apiTimeout bounds one API request of a scenario's client.
	apiTimeout = 3 * time.Second
	// detectionSlack is what a detection may take beyond the agent's TTL:
	// etcd's leader revokes expired leases every 500 ms, then the
	// delete reaches the coordinator's watch.
	detectionSlack = time.Second
	// lostGrace is the coordinators' --lost-grace-period in scenarios
	// that check lost allocations.
	lostGrace = time.Second
)

// gpusPerHost is the GPU count of the mock-dgxa100 backend.
const gpusPerHost = 8

// env is one scenario's world: a three-member etcd cluster of its own and
// the binaries to run against it. Every process ends with the test.
type env struct {
	t       *testing.T
	cluster *harness.EtcdCluster
	ks      keyspace.Keyspace
	agent   string // path of the agent binary
	coord   string // path of the coordinator binary
	// transport is shared by the scenario's API clients; its idle
	// connections close with the test so no goroutine outlives it.
	transport *http.Transport
}

// newEnv builds the binaries and starts a cluster with etcd's default
// timing. It skips the test under -short.
func newEnv(t *testing.T) *env {
	t.Helper()
	harness.SkipShort(t)
	e := &env{
		t:         t,
		agent:     harness.Binary(t, harness.AgentPackage),
		coord:     harness.Binary(t, harness.CoordinatorPackage),
		transport: &http.Transport{MaxIdleConnsPerHost: 16},
	}
	t.Cleanup(e.transport.CloseIdleConnections)
	ks, err := keyspace.New(keyspace.DefaultPrefix)
	require.NoError(t, err)
	e.ks = ks
	e.cluster = harness.StartCluster(t, harness.ClusterConfig{
		LogLevel: "warn",
	})
	return e
}

// endpoints returns the cluster's client URLs joined for a flag.
func (e *env) endpoints() string {
	return strings.Join(e.cluster.Endpoints(), ",")
}

// agentArgs returns the command line of an agent for hostID with eight
// simulated GPUs and the label host=<hostID>, so requests can target it.
func (e *env) agentArgs(hostID, endpoints string) []string {
	return []string{
		"run",
		"--host-id=" + hostID,
		"--name=" + hostID,
		"--label=host=" + hostID,
		"--etcd-endpoints=" + endpoints,
		"--etcd-dial-timeout=2s",
		"--prefix=" + e.ks.Prefix(),
		"--ttl=" + agentTTL.String(),
		"--interval=" + agentInterval.String(),
		"--status-max-interval=" + agentStatusMax.String(),
		"--gpu-backend=mock-dgxa100",
		"--advertise-addr=127.0.0.1",
	}
}

// startAgent starts an agent connected to endpoints (the cluster's when
// empty). It does not wait for the registration.
func (e *env) startAgent(hostID, endpoints string) *harness.Process {
	e.t.Helper()
	if endpoints == "" {
		endpoints = e.endpoints()
	}
	return harness.StartProcess(e.t, harness.ProcessConfig{
		Name: "agent-" + hostID,
		Path: e.agent,
		Args: e.agentArgs(hostID, endpoints),
	})
}

// coordinator is a coordinator process and an API client for it.
type coordinator struct {
	proc *harness.Process
	url  string
	api  *client.Client
}

// startCoordinator starts a coordinator on a free port, connected to
// endpoints (the cluster's when empty), with extra flags appended, and
// waits until it is ready.
func (e *env) startCoordinator(name, endpoints string,
	extra ...string) *coordinator {
	e.t.Helper()
	if endpoints == "" {
		endpoints = e.endpoints()
	}
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(e.t))
	c := &coordinator{url: "http://" + addr}
	c.proc = harness.StartProcess(e.t, harness.ProcessConfig{
		Name: "coordinator-" + name,
		Path: e.coord,
		Args: append([]string{
			"serve",
			"--listen=" + addr,
			"--etcd-endpoints=" + endpoints,
			"--etcd-dial-timeout=2s",
			"--etcd-call-timeout=2s",
			"--prefix=" + e.ks.Prefix(),
			"--shutdown-timeout=5s",
		}, extra...),
	})
	c.api = e.newClient(c.url)
	harness.WaitHTTPOK(e.t, c.url+"/readyz", startTimeout)
	return c
}

// newClient returns an API client that tries each call once, so that a
// scenario gets every failure and decides itself what to retry.
func (e *env) newClient(url string) *client.Client {
	e.t.Helper()
	c, err := client.New(url,
		client.WithHTTPClient(&http.Client{Transport: e.transport}),
		client.WithTimeout(apiTimeout),
		client.WithRetry(1, time.Millisecond, time.Millisecond))
	require.NoError(e.t, err)
	return c
}

// restart starts a stopped or killed coordinator again on the same port
// and waits until it is ready.
func (c *coordinator) restart(t *testing.T) {
	t.Helper()
	c.proc.Restart()
	harness.WaitHTTPOK(t, c.url+"/readyz", startTimeout)
}

// health returns a host's health as c judges it, or the error's text.
func (c *coordinator) health(hostID string) string {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	h, err := c.api.HostHealth(ctx, hostID)
	if err != nil {
		return "error: " + err.Error()
	}
	return h.Health
}

// awaitHealth polls c until hostID has health want and returns the time
// that took.
func (c *coordinator) awaitHealth(t *testing.T, hostID, want string,
	timeout time.Duration) time.Duration {
	t.Helper()
	d := harness.Await(t, timeout, pollInterval, func() bool {
		return c.health(hostID) == want
	}, fmt.Sprintf("host %s %s on %s", hostID, want, c.url))
	t.Logf("host %s %s after %s (polling %s)", hostID, want,
		d.Round(time.Millisecond), c.url)
	return d
}

// awaitAllHealthy waits until every host in ids is healthy on c.
func (c *coordinator) awaitAllHealthy(t *testing.T, timeout time.Duration,
	ids ...string) time.Duration {
	t.Helper()
	return harness.Await(t, timeout, pollInterval, func() bool {
		for _, id := range ids {
			if c.health(id) != api.HealthHealthy {
				return false
			}
		}
		return true
	}, fmt.Sprintf("hosts %v healthy on %s", ids, c.url))
}

// outcomeUnknown reports whether a call may or may not have taken effect.
func outcomeUnknown(err error) bool {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode >= 500
	}
	return true
}

// gpuRequest requests n GPUs on host hostID, or on any host when hostID
// is empty.
func gpuRequest(n int, hostID string) api.AllocationRequest {
	req := api.AllocationRequest{GPU: n, Owner: "integration"}
	if hostID != "" {
		req.Labels = map[string]string{"host": hostID}
	}
	return req
}

// requireNo5xx fails the test when err is an API error with a 5xx status
// other than 503, which the API uses for an unreachable etcd.
func requireNo5xx(t *testing.T, err error) {
	t.Helper()
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		require.True(t, apiErr.StatusCode < 500 ||
			apiErr.StatusCode == http.StatusServiceUnavailable,
			"unexpected status: %v", err)
	}
}
