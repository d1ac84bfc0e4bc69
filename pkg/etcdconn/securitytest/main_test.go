package securitytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestMain(m *testing.M) {
	harness.Main(m)
}

// daemons are the binaries under test.
type daemons struct {
	agent, coordinator string
}

func build(t *testing.T) daemons {
	t.Helper()
	return daemons{
		agent:       harness.Binary(t, harness.AgentPackage),
		coordinator: harness.Binary(t, harness.CoordinatorPackage),
	}
}

func start(t *testing.T, name, path string, args ...string) *harness.Process {
	t.Helper()
	return harness.StartProcess(t, harness.ProcessConfig{
		Name: name, Path: path, Args: args,
		LogFile: filepath.Join(t.TempDir(), name+".log"),
	})
}

// apiListen returns a free loopback host:port.
func apiListen(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
}

// waitHealthy waits until the coordinator at base reports hostID healthy.
func waitHealthy(t *testing.T, base, hostID string, procs ...*harness.Process) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/v1/hosts/" + hostID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h api.Host
		return resp.StatusCode == http.StatusOK &&
			json.NewDecoder(resp.Body).Decode(&h) == nil &&
			h.Health == api.HealthHealthy
	}, 30*time.Second, 100*time.Millisecond, "host %s not healthy; logs:\n%s",
		hostID, logs(procs...))
}

// allocate posts one GPU request with the bearer token, if any, and
// returns the status code and body.
func allocate(t *testing.T, base, token string) (int, string) {
	t.Helper()
	body, err := json.Marshal(api.AllocationRequest{CPU: 1, GPU: 1, Owner: "security"})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/allocations",
		bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(out)
}

func logs(procs ...*harness.Process) string {
	var b bytes.Buffer
	for _, p := range procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.Name(), p.Logs())
	}
	return b.String()
}
