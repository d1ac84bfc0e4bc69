package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server/servertest"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

// clientHarness is pkg/client talking over TCP to the real server over a
// fake fleet.
type clientHarness struct {
	fleet  *servertest.Fleet
	client *client.Client
}

func newClientHarness(t *testing.T) *clientHarness {
	t.Helper()
	fleet := servertest.NewFleet(nil)
	fleet.AddHost(servertest.SampleHost("gpu-1", 4))
	srv := httptest.NewServer(server.New(server.Config{
		Fleet: fleet, Logger: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, client.WithHTTPClient(srv.Client()),
		client.WithRetry(3, time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	return &clientHarness{fleet: fleet, client: c}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientEveryEndpoint(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c, ctx := h.client, testCtx(t)

	require.NoError(t, c.Ready(ctx))
	hosts, err := c.ListHosts(ctx)
	require.NoError(t, err)
	require.Len(t, hosts, 1)
	host, err := c.GetHost(ctx, "gpu-1")
	require.NoError(t, err)
	assert.Equal(t, 4, host.TotalGPU)
	health, err := c.HostHealth(ctx, "gpu-1")
	require.NoError(t, err)
	assert.Equal(t, api.HealthHealthy, health.Health)

	sel, err := c.Select(ctx, api.AllocationRequest{GPU: 2})
	require.NoError(t, err)
	assert.Len(t, sel.GPUs, 2)

	alloc, created, err := c.Allocate(ctx, api.AllocationRequest{GPU: 2, Owner: "alice", TTLSeconds: 30})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, "GPU-gpu-1-0,GPU-gpu-1-1", alloc.CUDAVisibleDevices)

	list, err := c.ListAllocations(ctx, client.AllocationFilter{Owner: "alice", State: "active"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	got, err := c.GetAllocation(ctx, alloc.ID)
	require.NoError(t, err)
	assert.Equal(t, alloc.ID, got.ID)
	_, err = c.Renew(ctx, alloc.ID)
	require.NoError(t, err)

	released, err := c.Release(ctx, alloc.ID)
	require.NoError(t, err)
	assert.Equal(t, "released", released.State)
	again, err := c.Release(ctx, alloc.ID)
	require.NoError(t, err)
	assert.True(t, again.AlreadyReleased)

	drained, err := c.Drain(ctx, "gpu-1")
	require.NoError(t, err)
	assert.Equal(t, "draining", drained.Status)
	undrained, err := c.Undrain(ctx, "gpu-1")
	require.NoError(t, err)
	assert.Equal(t, "active", undrained.Status)

	stopped := servertest.SampleHost("old", 0)
	stopped.Health = api.HealthStopped
	h.fleet.AddHost(stopped)
	require.NoError(t, c.RemoveHost(ctx, "old"))
}

func TestClientErrorsFromServer(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c, ctx := h.client, testCtx(t)

	_, _, err := c.Allocate(ctx, api.AllocationRequest{GPU: 9})
	require.ErrorIs(t, err, client.ErrNoCapacity)
	assert.NotErrorIs(t, err, client.ErrConflict)
	var apiErr *client.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 409, apiErr.StatusCode)
	assert.Contains(t, apiErr.Message, "no host has")

	_, _, err = c.Allocate(ctx, api.AllocationRequest{CPU: -1})
	require.ErrorIs(t, err, client.ErrInvalid)
	assert.Contains(t, err.Error(), `field "cpu" is -1`)

	_, _, err = c.Allocate(ctx, api.AllocationRequest{GPU: 1, Strategy: "fastest"})
	require.ErrorIs(t, err, client.ErrInvalid)
	assert.Contains(t, err.Error(), "least_used, most_free")

	_, err = c.GetHost(ctx, "nope")
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = c.GetAllocation(ctx, "a/b")
	require.ErrorIs(t, err, client.ErrInvalid, "an ID with a slash is escaped, not a different path")

	err = c.RemoveHost(ctx, "gpu-1")
	require.ErrorIs(t, err, client.ErrConflict)
	assert.NotErrorIs(t, err, client.ErrNoCapacity)

	_, err = c.ListAllocations(ctx, client.AllocationFilter{State: "stopped"})
	require.ErrorIs(t, err, client.ErrInvalid)

	h.fleet.SetReady(false)
	require.ErrorIs(t, c.Ready(ctx), client.ErrUnavailable)
}

func TestClientRetriesAgainstServer(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c, ctx := h.client, testCtx(t)
	down := errors.Join(errors.New("etcd is unreachable"), service.ErrUnavailable)

	h.fleet.FailNext("ListHosts", down, down)
	_, err := c.ListHosts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, h.fleet.Calls("ListHosts"))

	h.fleet.FailNext("Allocate", down)
	_, _, err = c.Allocate(ctx, api.AllocationRequest{GPU: 1})
	require.ErrorIs(t, err, client.ErrUnavailable)
	assert.Contains(t, err.Error(), "etcd is unreachable")
	assert.Equal(t, 1, h.fleet.Calls("Allocate"), "allocate without a key is not retried")

	h.fleet.FailNext("Allocate", down)
	_, created, err := c.Allocate(ctx, api.AllocationRequest{GPU: 1, IdempotencyKey: "job-1"})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 3, h.fleet.Calls("Allocate"))

	h.fleet.FailNext("Drain", down)
	_, err = c.Drain(ctx, "gpu-1")
	require.ErrorIs(t, err, client.ErrUnavailable)
	assert.Equal(t, 1, h.fleet.Calls("Drain"))

	h.fleet.FailNext("Release", down, down, down)
	_, err = c.Release(ctx, "alloc-1")
	require.ErrorIs(t, err, client.ErrUnavailable)
	assert.Equal(t, 3, h.fleet.Calls("Release"), "gives up after the attempt limit")
}

func TestKeepAliveRenewsThenReleases(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c := h.client
	alloc, _, err := c.Allocate(testCtx(t), api.AllocationRequest{GPU: 1, TTLSeconds: 60})
	require.NoError(t, err)

	// One transient failure must not end the keepalive.
	h.fleet.FailNext("Renew", errors.Join(errors.New("blip"), service.ErrUnavailable),
		errors.Join(errors.New("blip"), service.ErrUnavailable),
		errors.Join(errors.New("blip"), service.ErrUnavailable))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.KeepAlive(ctx, alloc.ID, 5*time.Millisecond) }()

	require.Eventually(t, func() bool { return h.fleet.Calls("Renew") >= 6 },
		5*time.Second, time.Millisecond)
	assert.Zero(t, h.fleet.Calls("Release"), "no release while ctx lives")
	cancel()

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("KeepAlive did not return after its context ended")
	}
	got, err := c.GetAllocation(testCtx(t), alloc.ID)
	require.NoError(t, err)
	assert.Equal(t, "released", got.State)
}

func TestKeepAliveStopsOnFatalError(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c := h.client
	alloc, _, err := c.Allocate(testCtx(t), api.AllocationRequest{GPU: 1})
	require.NoError(t, err)
	h.fleet.FailNext("Renew", errors.Join(errors.New("allocation expired"), service.ErrConflict))

	err = c.KeepAlive(testCtx(t), alloc.ID, time.Millisecond)
	require.ErrorIs(t, err, client.ErrConflict)
	assert.Contains(t, err.Error(), "allocation expired")
	assert.Contains(t, err.Error(), "renew allocation")
	assert.Equal(t, 1, h.fleet.Calls("Renew"))
	assert.Equal(t, 1, h.fleet.Calls("Release"), "released even after a fatal renewal error")
}

func TestKeepAliveDerivesInterval(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c := h.client

	// Without a TTL nothing is renewed; the allocation is released at the end.
	alloc, _, err := c.Allocate(testCtx(t), api.AllocationRequest{GPU: 1})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.NoError(t, c.KeepAlive(ctx, alloc.ID, 0))
	assert.Zero(t, h.fleet.Calls("Renew"))
	assert.Equal(t, 1, h.fleet.Calls("Release"))

	// An unknown allocation is a fatal error, and the release finds
	// nothing, which is not a second error.
	err = c.KeepAlive(testCtx(t), "alloc-404", 0)
	require.ErrorIs(t, err, client.ErrNotFound)
}

func TestKeepAliveNegativeIntervalReleases(t *testing.T) {
	t.Parallel()
	h := newClientHarness(t)
	c := h.client
	alloc, _, err := c.Allocate(testCtx(t), api.AllocationRequest{GPU: 1, TTLSeconds: 60})
	require.NoError(t, err)

	err = c.KeepAlive(testCtx(t), alloc.ID, -time.Second)
	require.ErrorIs(t, err, client.ErrInvalid)
	assert.Contains(t, err.Error(), "keepalive interval -1s is negative")
	assert.Zero(t, h.fleet.Calls("Renew"))
	assert.Equal(t, 1, h.fleet.Calls("Release"), "released even though the interval is invalid")
	got, err := c.GetAllocation(testCtx(t), alloc.ID)
	require.NoError(t, err)
	assert.Equal(t, "released", got.State)
}
