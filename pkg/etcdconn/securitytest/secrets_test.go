package securitytest

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
)

// Secrets that must never show up in any output. Each is unique enough
// that a match cannot be a coincidence.
const (
	etcdPassword  = "etcd-pw-MARKER-7f3a91c2"
	wrongPassword = "wrong-pw-MARKER-5e8d02b4"
	apiToken      = "api-token-MARKER-c41d9e77a0"
	wrongToken    = "bad-token-MARKER-0b9f13aa52"
)

var markers = []string{etcdPassword, wrongPassword, apiToken, wrongToken}

func writeSecret(t *testing.T, dir, name, value string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(value+"\n"), 0o600))
	return path
}

// enableAuth creates the root user with etcdPassword and turns on etcd's
// authentication.
func enableAuth(t *testing.T, c *etcdtest.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Client.UserAdd(ctx, "root", etcdPassword)
	require.NoError(t, err)
	_, err = c.Client.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = c.Client.AuthEnable(ctx)
	require.NoError(t, err)
}

// outputs collects every text the daemons and commands printed.
type outputs struct {
	t     *testing.T
	texts map[string]string
}

func (o *outputs) add(name, text string) { o.texts[name] += text }

// runCommand runs a one-shot command and records its output.
func (o *outputs) runCommand(name, path string, env []string, args ...string) (int, string) {
	o.t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	o.add(name, string(out))
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else {
		require.NoError(o.t, err, name)
	}
	return code, string(out)
}

func (o *outputs) scrape(name, url string) {
	o.t.Helper()
	resp, err := http.Get(url)
	require.NoError(o.t, err, name)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(o.t, err)
	require.Equal(o.t, http.StatusOK, resp.StatusCode, name)
	o.add(name, string(body))
}

func TestNoSecretInOutput(t *testing.T) {
	t.Parallel()
	bin := build(t)
	cluster := etcdtest.StartWith(t, func(c *etcdembed.Config) { c.BcryptCost = 4 })
	enableAuth(t, cluster)

	dir := t.TempDir()
	pwFile := writeSecret(t, dir, "etcd-password", etcdPassword)
	wrongPwFile := writeSecret(t, dir, "wrong-password", wrongPassword)
	tokenFile := writeSecret(t, dir, "token", apiToken)
	wrongTokenFile := writeSecret(t, dir, "wrong-token", wrongToken)
	etcdFlags := []string{"--etcd-endpoints", cluster.Endpoint,
		"--etcd-user", "root", "--etcd-password-file", pwFile}
	out := &outputs{t: t, texts: map[string]string{}}

	listen := apiListen(t)
	base := "http://" + listen
	coord := start(t, "coordinator", bin.coordinator, append([]string{"serve",
		"--listen", listen, "--auth-token-file", tokenFile,
		"--log-level", "debug"}, etcdFlags...)...)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	agent := start(t, "agent", bin.agent, append([]string{"run",
		"--host-id", "secret-1", "--gpu-backend", "mock-dgxa100",
		"--ttl", "3s", "--interval", "500ms", "--log-level", "debug",
		"--metrics-listen", metricsAddr}, etcdFlags...)...)
	waitHealthy(t, base, "secret-1", coord, agent)

	// Wrong credentials fail, and their errors echo nothing secret.
	badAgent := start(t, "agent-bad-password", bin.agent, "run",
		"--host-id", "secret-2", "--gpu-backend", "none", "--ttl", "3s",
		"--metrics-listen", "", "--log-level", "debug",
		"--etcd-endpoints", cluster.Endpoint, "--etcd-user", "root",
		"--etcd-password-file", wrongPwFile)
	code, body := allocate(t, base, "")
	assert.Equal(t, http.StatusUnauthorized, code, body)
	out.add("missing token response", body)
	code, body = allocate(t, base, wrongToken)
	assert.Equal(t, http.StatusUnauthorized, code, body)
	out.add("wrong token response", body)
	code, body = allocate(t, base, apiToken)
	assert.Equal(t, http.StatusCreated, code, body)
	out.add("allocation response", body)

	// The CLI sends the token from its file, also through the
	// environment, and fails cleanly with a wrong one.
	code, text := out.runCommand("cli allocations", bin.coordinator, nil,
		"allocations", "--addr", base, "--token-file", tokenFile, "--json")
	assert.Equal(t, 0, code, text)
	code, text = out.runCommand("cli allocate with wrong token", bin.coordinator,
		[]string{"REMOTEGPU_TOKEN_FILE=" + wrongTokenFile},
		"allocate", "--addr", base, "--gpu", "1")
	assert.Equal(t, 1, code, text)
	assert.Contains(t, text, "invalid bearer token")
	code, text = out.runCommand("cli allocate with token", bin.coordinator,
		[]string{"REMOTEGPU_TOKEN_FILE=" + tokenFile},
		"allocate", "--addr", base, "--gpu", "1")
	assert.Equal(t, 0, code, text)
	code, text = out.runCommand("agent inspect", bin.agent,
		[]string{"REMOTEGPU_ETCD_PASSWORD_FILE=" + pwFile},
		"inspect", "--host-id", "secret-1", "--gpu-backend", "mock-dgxa100")
	assert.Equal(t, 0, code, text)

	out.scrape("agent metrics", "http://"+metricsAddr+"/metrics")
	out.scrape("coordinator metrics", base+"/metrics")

	// A wrong etcd password is fatal at start, with etcd's message.
	status, err := badAgent.Wait(20 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1, status.Code)
	assert.Equal(t, 0, agent.Terminate(10*time.Second).Code)
	assert.Equal(t, 0, coord.Terminate(30*time.Second).Code)
	for _, p := range []*harness.Process{coord, agent, badAgent} {
		out.add(p.Name()+" log", p.Logs())
	}

	assert.Contains(t, out.texts["agent-bad-password log"], "authentication failed")
	for name, text := range out.texts {
		for _, m := range markers {
			assert.NotContains(t, text, m, "secret in %s", name)
		}
	}
}
