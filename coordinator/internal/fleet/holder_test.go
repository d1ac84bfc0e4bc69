package fleet

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// buildHolder builds testdata/holder into a temporary folder.
func buildHolder(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "holder")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/holder")
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./testdata/holder: %s", out)
	return bin
}

// serveAPI serves the coordinator's HTTP API over f on a free 127.0.0.1
// port until the test ends.
func serveAPI(t *testing.T, e *env, f *Fleet) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(server.New(server.Config{
		Fleet: f, Logger: e.log}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// startHolder starts the holder process and returns it with the ID of
// the allocation it printed.
func startHolder(t *testing.T, bin, addr string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "--addr", addr, "--ttl", "2")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case id := <-lines:
		require.NotEmpty(t, id, "holder printed no ID; stderr: %s",
			stderr.String())
		return cmd, id
	case <-time.After(30 * time.Second):
		require.FailNow(t, "holder printed no allocation ID",
			"stderr: %s", stderr.String())
		return nil, ""
	}
}

func TestKilledHolderAllocationExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a helper process")
	}
	t.Parallel()
	bin := buildHolder(t)
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 1))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)
	addr := serveAPI(t, e, f)

	cmd, id := startHolder(t, bin, addr)
	a, err := f.GetAllocation(ctx(t), id)
	require.NoError(t, err)
	assert.Equal(t, "holder", a.Owner)
	assert.Equal(t, int64(2), a.TTLSeconds)

	// KeepAlive renews every TTL/3, so the allocation outlives its TTL.
	time.Sleep(3 * time.Second)
	a, err = f.GetAllocation(ctx(t), id)
	require.NoError(t, err)
	assert.Equal(t, keyspace.StateActive, a.State, "renewed allocation")

	killed := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	waitState(t, f, id, keyspace.StateExpired, 8*time.Second)
	assert.Less(t, time.Since(killed), 6*time.Second)

	c, err := client.New(addr)
	require.NoError(t, err)
	_, err = c.Renew(ctx(t), id)
	require.Error(t, err)
	var apiErr *client.APIError
	require.True(t, errors.As(err, &apiErr), "error %v", err)
	assert.Equal(t, http.StatusConflict, apiErr.StatusCode)
	assert.ErrorIs(t, err, client.ErrConflict)
	assert.Contains(t, err.Error(), "expired at")

	expired, err := c.ListAllocations(ctx(t), client.AllocationFilter{
		State: keyspace.StateExpired, Owner: "holder"})
	require.NoError(t, err)
	require.Len(t, expired, 1)
	assert.Equal(t, id, expired[0].ID)

	next, _, err := c.Allocate(ctx(t), api.AllocationRequest{GPU: 1})
	require.NoError(t, err, "the freed GPU goes to the next request")
	assert.Equal(t, a.GPUs, next.GPUs)
}

// TestInterruptedHolderReleases checks the other end of KeepAlive: a
// holder that exits cleanly releases at once instead of expiring.
func TestInterruptedHolderReleases(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a helper process")
	}
	t.Parallel()
	bin := buildHolder(t)
	e := newEnv(t)
	f := e.startFleet(t, nil)
	e.registerHost(t, hostDoc("h1", 8, 32, 1))
	waitHealth(t, f, "h1", api.HealthHealthy, 5*time.Second)

	cmd, id := startHolder(t, bin, serveAPI(t, e, f))
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	waitCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-waitCtx.Done():
		require.FailNow(t, "holder did not exit after SIGTERM")
	}
	waitState(t, f, id, keyspace.StateReleased, 5*time.Second)
	assert.Zero(t, f.Stats().AllocationsExpired)
}
