// Package docs tests the commands that the README's "Inspecting with
// etcdctl" section shows, against real daemons.
package docs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestMain(m *testing.M) {
	harness.Main(m)
}

// docEndpoint is the endpoint the documented commands name.
const docEndpoint = "http://127.0.0.1:2379"

// block is one fenced shell block of a Markdown file with the check name
// from the "<!-- check: NAME -->" comment above it.
type block struct {
	check, script string
}

var (
	checkLine = regexp.MustCompile(`^<!-- check: ([a-z-]+) -->$`)
	remaining = regexp.MustCompile(`remaining\((\d+)s\)`)
)

// parseBlocks returns the checked shell blocks of a Markdown file.
func parseBlocks(t *testing.T, path, heading string) []block {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data = section(t, data, heading)
	var blocks []block
	var cur *block
	inside := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inside && line == "```":
			inside = false
			blocks = append(blocks, *cur)
			cur = nil
		case inside:
			cur.script += line + "\n"
		case line == "```sh":
			require.NotNil(t, cur, "a shell block in %s lacks a check comment", path)
			inside = true
		case checkLine.MatchString(line):
			cur = &block{check: checkLine.FindStringSubmatch(line)[1]}
		}
	}
	require.NoError(t, sc.Err())
	return blocks
}

// section returns the part of a Markdown document from the level-two
// heading to the next one.
func section(t *testing.T, doc []byte, heading string) []byte {
	t.Helper()
	start := bytes.Index(doc, []byte("\n## "+heading+"\n"))
	require.GreaterOrEqual(t, start, 0, "no section %q", heading)
	rest := doc[start+1:]
	if end := bytes.Index(rest[3:], []byte("\n## ")); end >= 0 {
		rest = rest[:end+3]
	}
	return rest
}

// etcdctlPath builds etcdctl, the version go.mod pins, once.
var etcdctlPath = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "remotegpu-docs-etcdctl")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "etcdctl")
	out, err := exec.Command("go", "build", "-o", path,
		"go.etcd.io/etcd/etcdctl/v3").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build etcdctl: %w\n%s", err, out)
	}
	return path, nil
})

// fixture is a coordinator with embedded etcd, an agent and one
// allocation.
type fixture struct {
	endpoint, api, hostID, allocID string
	etcdctl                        string
}

func (f fixture) substitute(script string) string {
	return strings.NewReplacer(
		"go tool etcdctl", f.etcdctl,
		docEndpoint, f.endpoint,
		"HOST_ID", f.hostID,
		"ALLOC_ID", f.allocID,
	).Replace(script)
}

func startFixture(t *testing.T) fixture {
	t.Helper()
	etcdctl, err := etcdctlPath()
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(etcdctl)) })

	ports := harness.FreePorts(t, 3)
	f := fixture{
		endpoint: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		api:      "http://127.0.0.1:" + strconv.Itoa(ports[2]),
		hostID:   "docs-1",
		etcdctl:  etcdctl,
	}
	coord := harness.StartProcess(t, harness.ProcessConfig{
		Name: "coordinator", Path: harness.Binary(t, harness.CoordinatorPackage),
		Args: []string{"serve", "--data-dir", t.TempDir(),
			"--etcd-listen-client", f.endpoint,
			"--etcd-listen-peer", "http://127.0.0.1:" + strconv.Itoa(ports[1]),
			"--listen", strings.TrimPrefix(f.api, "http://")},
		LogFile: filepath.Join(t.TempDir(), "coordinator.log"),
	})
	harness.WaitHTTPOK(t, f.api+"/readyz", 30*time.Second)
	agent := harness.StartProcess(t, harness.ProcessConfig{
		Name: "agent", Path: harness.Binary(t, harness.AgentPackage),
		Args: []string{"run", "--etcd-endpoints", f.endpoint,
			"--host-id", f.hostID, "--gpu-backend", "mock-dgxa100",
			"--ttl", "3s", "--interval", "500ms", "--metrics-listen", ""},
		LogFile: filepath.Join(t.TempDir(), "agent.log"),
	})
	harness.WaitHTTPOK(t, f.api+"/v1/hosts/"+f.hostID, 30*time.Second)

	body, err := json.Marshal(api.AllocationRequest{CPU: 1, GPU: 1, Owner: "docs"})
	require.NoError(t, err)
	var alloc api.Allocation
	require.Eventually(t, func() bool {
		resp, err := http.Post(f.api+"/v1/allocations", "application/json",
			bytes.NewReader(body))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusCreated &&
			json.NewDecoder(resp.Body).Decode(&alloc) == nil
	}, 20*time.Second, 100*time.Millisecond, "allocate; logs:\n%s\n%s",
		coord.Logs(), agent.Logs())
	f.allocID = alloc.ID
	return f
}

func runScript(t *testing.T, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c",
		script).CombinedOutput()
	require.NoError(t, err, "script:\n%s\noutput:\n%s", script, out)
	return string(out)
}

func TestEtcdctlCommandsInDocs(t *testing.T) {
	t.Parallel()
	blocks := parseBlocks(t, "../README.md", "Inspecting with etcdctl")
	f := startFixture(t)
	statusKey := "/remotegpu/hosts/" + f.hostID + "/status"
	allocKey := "/remotegpu/allocations/" + f.allocID

	checks := map[string]func(t *testing.T, out string){
		"keys": func(t *testing.T, out string) {
			assert.Contains(t, out, "/remotegpu/hosts/"+f.hostID+"/info\n")
			assert.Contains(t, out, statusKey+"\n")
			assert.Contains(t, out, allocKey+"\n")
		},
		"host-info": func(t *testing.T, out string) {
			var info map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &info), out)
			assert.Equal(t, f.hostID, info["id"])
			assert.Len(t, info["gpus"], 8)
		},
		"host-status": func(t *testing.T, out string) {
			var st map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &st), out)
			assert.Contains(t, st, "instance_id")
			assert.Len(t, st["gpus"], 8)
		},
		"lease": func(t *testing.T, out string) {
			m := remaining.FindStringSubmatch(out)
			require.Len(t, m, 2, out)
			left, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			assert.Positive(t, left, out)
			assert.Contains(t, out, "granted with TTL(3s)")
			assert.Contains(t, out, "attached keys(["+statusKey+"])")
		},
		"ledger": func(t *testing.T, out string) {
			assert.Contains(t, out, `"`+f.allocID+`"`)
		},
		"allocations": func(t *testing.T, out string) {
			assert.Contains(t, out, allocKey+"\n")
			assert.Contains(t, out, `"state":"active"`)
		},
		"allocation": func(t *testing.T, out string) {
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &rec), out)
			assert.Equal(t, f.allocID, rec["id"])
			assert.Equal(t, f.hostID, rec["host_id"])
			assert.Equal(t, "docs", rec["owner"])
		},
	}

	seen := map[string]bool{}
	for _, b := range blocks {
		seen[b.check] = true
		if b.check == "watch" {
			t.Run(b.check, func(t *testing.T) { checkWatch(t, f, b.script) })
			continue
		}
		check, ok := checks[b.check]
		require.True(t, ok, "no check for block %q", b.check)
		t.Run(b.check, func(t *testing.T) {
			check(t, runScript(t, f.substitute(b.script)))
		})
	}
	for name := range checks {
		assert.True(t, seen[name], "README.md lost the %q block", name)
	}
	assert.True(t, seen["watch"], "README.md lost the watch block")
}

// checkWatch runs the watch command, releases the allocation and expects
// the watch to print the record's update.
func checkWatch(t *testing.T, f fixture, script string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	cmd := exec.CommandContext(ctx, "bash", "-c", "exec "+f.substitute(script))
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	// etcdctl prints nothing until the first event, so give it a moment
	// to open the watch before the change.
	time.Sleep(time.Second)

	req, err := http.NewRequest(http.MethodDelete,
		f.api+"/v1/allocations/"+f.allocID, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	want := "PUT\n/remotegpu/allocations/" + f.allocID + "\n"
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), want) &&
			strings.Contains(out.String(), `"state":"released"`)
	}, 10*time.Second, 50*time.Millisecond, "watch output:\n%s", out.String())
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
