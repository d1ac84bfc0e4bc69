package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server/servertest"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// apiFixture is the real API server over a fake fleet with one 4-GPU host.
type apiFixture struct {
	fleet *servertest.Fleet
	addr  string
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	fleet := servertest.NewFleet(nil)
	h := servertest.SampleHost("gpu-1", 4)
	h.Labels = map[string]string{"zone": "a"}
	fleet.AddHost(h)
	srv := httptest.NewServer(server.New(server.Config{
		Fleet: fleet, Logger: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return &apiFixture{fleet: fleet, addr: srv.URL}
}

// run executes the command line and returns exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := Main(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// runOK runs a command that must succeed and returns its stdout.
func (f *apiFixture) runOK(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := run(t, append(args, "--addr", f.addr)...)
	require.Equal(t, 0, code, "stderr: %s", stderr)
	assert.Empty(t, stderr)
	return stdout
}

// runFail runs a command that must fail with exit code 1 and returns its
// stderr.
func (f *apiFixture) runFail(t *testing.T, args ...string) string {
	t.Helper()
	return f.runFailCode(t, 1, args...)
}

// runFailCode runs a command that must fail with the given exit code and
// returns its stderr.
func (f *apiFixture) runFailCode(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	code, stdout, stderr := run(t, append(args, "--addr", f.addr)...)
	require.Equal(t, wantCode, code, "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Empty(t, stdout)
	require.NotEmpty(t, stderr)
	return stderr
}

func TestHostsCommand(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)

	out := f.runOK(t, "hosts")
	assert.Regexp(t, `(?m)^ID\s+ADDRESS\s+HEALTH\s+CPU\s+MEMORY \(GiB\)\s+GPUS FREE\s+LAST HEARTBEAT$`, out)
	assert.Regexp(t, `(?m)^gpu-1\s+10\.0\.0\.1\s+healthy\s+0/32\s+0\.0/256\.0\s+4/4\s+\d+s ago$`, out)

	var list api.HostList
	require.NoError(t, json.Unmarshal([]byte(f.runOK(t, "hosts", "--json")), &list))
	require.Len(t, list.Hosts, 1)
	assert.Equal(t, "gpu-1", list.Hosts[0].ID)

	out = f.runOK(t, "host", "gpu-1")
	assert.Regexp(t, `(?m)^ID:\s+gpu-1$`, out)
	assert.Regexp(t, `(?m)^Labels:\s+zone=a$`, out)
	assert.Regexp(t, `(?m)^3\s+GPU-gpu-1-3\s+NVIDIA A100-SXM4-80GB\s+80\.0\s+healthy\s+-$`, out)

	var h api.Host
	require.NoError(t, json.Unmarshal([]byte(f.runOK(t, "host", "gpu-1", "--json")), &h))
	assert.Len(t, h.GPUs, 4)

	stderr := f.runFail(t, "host", "gpu-9")
	assert.Equal(t, "Error: not found: host \"gpu-9\" (HTTP 404)\n", stderr)
}

func TestAllocateAndReleaseCommands(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)

	out := f.runOK(t, "allocate", "--cpu", "4", "--memory", "16GiB", "--gpu", "2",
		"--gpu-model", "a100", "--min-gpu-memory", "40GiB", "--label", "zone=a",
		"--strategy", "bin_pack", "--owner", "alice", "--idempotency-key", "job-1", "--ttl", "10m")
	assert.Contains(t, out, "Allocated alloc-1 on host gpu-1 (10.0.0.1).")
	assert.Contains(t, out, "CUDA_VISIBLE_DEVICES=GPU-gpu-1-0,GPU-gpu-1-1\n")
	assert.Regexp(t, `(?m)^Expires:\s+\S+ \(renew or it ends\)$`, out)

	var alloc api.Allocation
	out = f.runOK(t, "allocate", "--gpu", "2", "--idempotency-key", "job-1", "--json")
	require.NoError(t, json.Unmarshal([]byte(out), &alloc))
	assert.Equal(t, "alloc-1", alloc.ID, "the idempotency key returns the first allocation")
	assert.Equal(t, int64(16<<30), alloc.Memory)
	assert.Equal(t, int64(600), alloc.TTLSeconds)
	assert.Equal(t, "alice", alloc.Owner)

	out = f.runOK(t, "allocations", "--owner", "alice", "--state", "active")
	assert.Regexp(t, `(?m)^alloc-1\s+gpu-1\s+alice\s+active\s+4\s+16\.0\s+2\s+\d+s ago\s+in 10m0s$`, out)
	out = f.runOK(t, "allocations", "--host", "gpu-1", "--state", "released")
	assert.NotContains(t, out, "alloc-1")

	assert.Equal(t, "released allocation alloc-1 on host gpu-1\n", f.runOK(t, "release", "alloc-1"))
	assert.Equal(t, "allocation alloc-1 was already released\n", f.runOK(t, "release", "alloc-1"))

	var list api.AllocationList
	require.NoError(t, json.Unmarshal([]byte(f.runOK(t, "allocations", "--json", "--state", "lost")), &list))
	assert.NotNil(t, list.Allocations, "an empty list prints [] not null")
}

func TestAllocateErrors(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	// Exit code 2 marks a usage error found before any request is sent,
	// and 1 an error response of the API.
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"allocate", "--gpu", "9"}, 1, "no capacity: no host has 0 CPUs, 0 bytes of memory and 9 GPUs free (HTTP 409)"},
		{[]string{"allocate"}, 1, "asks for nothing"},
		{[]string{"allocate", "--gpu", "1", "--strategy", "fast"}, 1, `unknown strategy "fast"; use one of least_used`},
		{[]string{"allocate", "--gpu", "-1"}, 1, `field "gpu" is -1`},
		{[]string{"allocate", "--gpu", "1", "--owner", strings.Repeat("o", 257)}, 1,
			`field "owner" is 257 bytes long, more than the maximum of 256 bytes`},
		{[]string{"allocate", "--memory", "16G"}, 2, `invalid argument "16G" for "--memory" flag`},
		{[]string{"allocate", "--gpu", "1", "--ttl", "1500ms"}, 2,
			`invalid argument "1500ms" for "--ttl" flag: use whole seconds, such as 90s or 30m`},
		{[]string{"allocate", "--gpu", "1", "--ttl", "-5s"}, 2,
			`invalid argument "-5s" for "--ttl" flag: it is negative; use 0 for the ` +
				`coordinator's default, or a duration from 1s to 8760h (one year)`},
		{[]string{"allocate", "--gpu", "1", "--ttl", "-1.5s"}, 2, "it is negative"},
		{[]string{"allocate", "--gpu", "1", "--ttl", "100000h"}, 2,
			`invalid argument "100000h" for "--ttl" flag: it is more than the maximum of 8760h (one year)`},
		{[]string{"allocate", "--gpu", "1", "--ttl", "8760h1s"}, 2, "more than the maximum of 8760h"},
		{[]string{"allocate", "--gpu", "1", "--ttl", "3000000h"}, 2,
			`invalid argument "3000000h" for "--ttl" flag: it is more than the maximum of 8760h`},
		{[]string{"allocate", "--gpu", "1", "--ttl", "-3000000h"}, 2, "it is negative"},
		{[]string{"allocate", "--gpu", "1", "--ttl", "10y"}, 2,
			`invalid argument "10y" for "--ttl" flag: not a duration; use a number with a unit`},
		{[]string{"allocate", "--gpu", "1", "--ttl", "600"}, 2, "not a duration"},
		{[]string{"allocate", "--label", "zone"}, 2, `"zone" for "--label" flag`},
		{[]string{"allocations", "--state", "stopped"}, 1, `query parameter state is "stopped"`},
		{[]string{"release", "alloc-9"}, 1, `allocation "alloc-9"`},
		{[]string{"release"}, 2, "accepts 1 arg(s), received 0"},
		{[]string{"remove-host", "gpu-1"}, 1, `host "gpu-1" is healthy`},
	}
	for _, tc := range cases {
		stderr := f.runFailCode(t, tc.code, tc.args...)
		assert.Contains(t, stderr, tc.want, "args %v", tc.args)
	}
	assert.Zero(t, f.fleet.Calls("Release")-1, "only the one valid release reached the fleet")
}

func TestDrainCommands(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)

	out := f.runOK(t, "drain", "gpu-1")
	assert.Equal(t, "host gpu-1 is draining: it keeps its allocations and takes no new ones\n", out)
	assert.Regexp(t, `(?m)^gpu-1\s+10\.0\.0\.1\s+healthy,draining\s`, f.runOK(t, "hosts"))

	var h api.Host
	require.NoError(t, json.Unmarshal([]byte(f.runOK(t, "undrain", "gpu-1", "--json")), &h))
	assert.Equal(t, "active", h.Status)

	stopped := servertest.SampleHost("old", 0)
	stopped.Health = api.HealthStopped
	f.fleet.AddHost(stopped)
	assert.Equal(t, "removed host old\n", f.runOK(t, "remove-host", "old"))
}

func TestUnreachableCoordinator(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, "hosts", "--addr", "http://127.0.0.1:1", "--timeout", "2s")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "cannot reach the coordinator at http://127.0.0.1:1: ")
	assert.Contains(t, stderr, "unavailable: GET /v1/hosts")
	assert.Contains(t, stderr, "connection refused")
	assert.Contains(t, stderr, `check that "remotegpu-coordinator serve" runs there, `+
		"or set --addr or REMOTEGPU_ADDR to its URL")

	code, _, stderr = run(t, "hosts", "--addr", "127.0.0.1:8080")
	assert.Equal(t, 2, code, "an invalid --addr is a usage error")
	assert.Contains(t, stderr, `invalid coordinator address "127.0.0.1:8080"`)
}

func TestAPIErrorIsNotUnreachable(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	stderr := f.runFail(t, "host", "gpu-9")
	assert.NotContains(t, stderr, "cannot reach", "the coordinator answered")
}

func TestAddrFromEnvironment(t *testing.T) {
	f := newAPIFixture(t)
	t.Setenv("REMOTEGPU_ADDR", f.addr)
	t.Setenv("REMOTEGPU_JSON", "true")
	t.Setenv("REMOTEGPU_VERSION", "1.2.3")

	code, stdout, stderr := run(t, "hosts")
	require.Equal(t, 0, code, stderr)
	var list api.HostList
	require.NoError(t, json.Unmarshal([]byte(stdout), &list), "REMOTEGPU_JSON=true selects JSON")

	// A flag on the command line wins over the environment.
	code, _, stderr = run(t, "hosts", "--addr", "http://127.0.0.1:1", "--timeout", "1s")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "127.0.0.1:1")

	// REMOTEGPU_JSON=true turns errors into JSON as well.
	t.Setenv("REMOTEGPU_TIMEOUT", "soon")
	code, _, stderr = run(t, "hosts")
	assert.Equal(t, 2, code)
	e := decodeErrorOutput(t, stderr)
	assert.Contains(t, e.Error, `invalid REMOTEGPU_TIMEOUT="soon"`)
	assert.Equal(t, "usage", e.Code)
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := run(t, "nosuchcommand")
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, `unknown command "nosuchcommand" for "remotegpu-coordinator"`)
	assert.Contains(t, stderr, "Run 'remotegpu-coordinator --help' for usage.")

	code, _, stderr = run(t, "hosts", "--frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "unknown flag: --frobnicate")
	assert.Contains(t, stderr, "Run 'remotegpu-coordinator hosts --help' for usage.")

	code, stdout, _ = run(t)
	assert.Equal(t, 0, code, "no command prints the help")
	assert.Contains(t, stdout, "Available Commands:")
}

func TestRenewCommand(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.runOK(t, "allocate", "--gpu", "1", "--ttl", "10m")

	out := f.runOK(t, "renew", "alloc-1")
	assert.Regexp(t, `^renewed allocation alloc-1 on host gpu-1; it expires at \S+ \(in 10m0s\)\n$`, out)

	var a api.Allocation
	require.NoError(t, json.Unmarshal([]byte(f.runOK(t, "renew", "alloc-1", "--json")), &a))
	assert.Equal(t, "alloc-1", a.ID)
	require.NotNil(t, a.ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(10*time.Minute), *a.ExpiresAt, time.Minute)
	assert.Equal(t, 2, f.fleet.Calls("Renew"))

	stderr := f.runFail(t, "renew", "alloc-9")
	assert.Contains(t, stderr, `allocation "alloc-9"`)
	assert.Contains(t, stderr, "HTTP 404")

	f.runOK(t, "release", "alloc-1")
	stderr = f.runFail(t, "renew", "alloc-1")
	assert.Contains(t, stderr, `allocation "alloc-1" is released`)

	stderr = f.runFailCode(t, 2, "renew")
	assert.Contains(t, stderr, "accepts 1 arg(s), received 0")
	stderr = f.runFailCode(t, 2, "renew", "alloc-1", "--ttl", "10m")
	assert.Contains(t, stderr, "unknown flag: --ttl", "the API renews by the allocation's own TTL")
}

func TestSelectCommand(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)

	out := f.runOK(t, "select", "--cpu", "1", "--memory", "16GiB", "--gpu", "1",
		"--strategy", "bin_pack", "--label", "zone=a")
	assert.Contains(t, out, "Host gpu-1 (10.0.0.1) would take 1 CPU, 16.0 GiB of memory "+
		"and 1 GPU; nothing was allocated.\n")
	assert.Regexp(t, `(?m)^0\s+GPU-gpu-1-0$`, out)

	out = f.runOK(t, "select", "--cpu", "2", "--gpu", "2")
	assert.Contains(t, out, "would take 2 CPUs, 0 B of memory and 2 GPUs;")

	out = f.runOK(t, "select", "--cpu", "1", "--memory", "50MiB")
	assert.Contains(t, out, "would take 1 CPU, 50.0 MiB of memory and 0 GPUs;")

	out = f.runOK(t, "select", "--cpu", "2")
	assert.Contains(t, out, "and 0 GPUs; nothing was allocated.\n")
	assert.NotContains(t, out, "INDEX", "no GPU table without GPUs")

	var sel api.Selection
	require.NoError(t, json.Unmarshal([]byte(f.runOK(t, "select", "--gpu", "2", "--json")), &sel))
	assert.Equal(t, "gpu-1", sel.Host.ID)
	assert.Len(t, sel.GPUs, 2)

	assert.Zero(t, f.fleet.Calls("Allocate"), "select must not allocate")
	list := f.runOK(t, "allocations")
	assert.NotContains(t, list, "alloc-")

	stderr := f.runFail(t, "select", "--gpu", "9")
	assert.Contains(t, stderr, "no capacity")
	stderr = f.runFail(t, "select", "--gpu", "1", "--strategy", "fast")
	assert.Contains(t, stderr, `unknown strategy "fast"`)
	stderr = f.runFailCode(t, 2, "select", "--memory", "lots")
	assert.Contains(t, stderr, `invalid argument "lots" for "--memory" flag`)
	stderr = f.runFailCode(t, 2, "select", "gpu-1")
	assert.Contains(t, stderr, `unknown command "gpu-1" for "remotegpu-coordinator select"`)
}

// decodeErrorOutput decodes stderr, which must be exactly one JSON line of
// errorOutput and nothing else.
func decodeErrorOutput(t *testing.T, stderr string) errorOutput {
	t.Helper()
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	dec := json.NewDecoder(strings.NewReader(stderr))
	dec.DisallowUnknownFields()
	var e errorOutput
	require.NoError(t, dec.Decode(&e), "stderr: %q", stderr)
	require.NotEmpty(t, e.Error)
	return e
}

func TestJSONErrors(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	cases := []struct {
		name   string
		args   []string
		exit   int
		want   errorOutput
		substr string
	}{
		{"not found", []string{"host", "gpu-9", "--json"}, 1,
			errorOutput{Error: `not found: host "gpu-9"`, Code: "not_found", Status: 404}, ""},
		{"no capacity", []string{"allocate", "--gpu", "9", "--json"}, 1,
			errorOutput{Code: "no_capacity", Status: 409}, "no host has 0 CPUs"},
		{"invalid filter", []string{"allocations", "--state", "bogus", "--json"}, 1,
			errorOutput{Code: "invalid", Status: 400}, `query parameter state is "bogus"`},
		{"usage before --json", []string{"allocate", "--ttl", "-5s", "--json"}, 2,
			errorOutput{Code: "usage"}, "it is negative"},
		{"usage after --json", []string{"allocate", "--json", "--ttl", "-5s"}, 2,
			errorOutput{Code: "usage"}, "it is negative"},
		{"json=true", []string{"release", "--json=true"}, 2,
			errorOutput{Code: "usage"}, "accepts 1 arg(s), received 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append(tc.args, "--addr", f.addr)...)
			assert.Equal(t, tc.exit, code, "the exit code is the same as without --json")
			assert.Empty(t, stdout)
			got := decodeErrorOutput(t, stderr)
			if tc.substr != "" {
				assert.Contains(t, got.Error, tc.substr)
				got.Error = ""
				tc.want.Error = ""
			}
			assert.Equal(t, tc.want, got)
			assert.NotContains(t, stderr, "(HTTP ", "the status is a field of its own")
			assert.NotContains(t, stderr, "--help", "nothing but the JSON object")
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		code, _, stderr := run(t, "hosts", "--json", "--addr", "http://127.0.0.1:1",
			"--timeout", "2s")
		assert.Equal(t, 1, code)
		got := decodeErrorOutput(t, stderr)
		assert.Equal(t, "unavailable", got.Code)
		assert.Zero(t, got.Status)
		assert.Contains(t, got.Error, "cannot reach the coordinator at http://127.0.0.1:1")
	})

	t.Run("json=false stays text", func(t *testing.T) {
		code, _, stderr := run(t, "host", "gpu-9", "--json=false", "--addr", f.addr)
		assert.Equal(t, 1, code)
		assert.Equal(t, "Error: not found: host \"gpu-9\" (HTTP 404)\n", stderr)
	})

	t.Run("command without --json stays text", func(t *testing.T) {
		code, _, stderr := run(t, "serve", "--json")
		assert.Equal(t, 2, code)
		assert.True(t, strings.HasPrefix(stderr, "Error: unknown flag: --json\n"), stderr)
	})
}
