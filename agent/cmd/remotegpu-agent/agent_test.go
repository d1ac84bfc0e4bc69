package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/agent/internal/gpu"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func TestRunRegistersAndSIGTERMDeregisters(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-1",
		"--label", "zone=z1", "--name", "Node One")...)
	h := newHostKeys(t, c.Client, "/e2e", "node-1")

	s := h.waitRegistered(10*time.Second, "")
	assert.Equal(t, "Node One", s.info.Name)
	assert.Equal(t, map[string]string{"zone": "z1"}, s.info.Labels)
	assert.NotEmpty(t, s.info.IPAddress)
	assert.Positive(t, s.info.TotalCPU)
	assert.Positive(t, s.info.TotalMemory)
	require.Len(t, s.info.GPUs, 8)
	for i, g := range s.info.GPUs {
		assert.Equal(t, gpu.SimulatedUUID("node-1", i), g.UUID)
		assert.Equal(t, int64(40960)<<20, g.MemoryTotal)
	}
	assert.Equal(t, int64(2), grantedTTL(t, c.Client, s.lease))
	require.Len(t, s.status.GPUs, 8)
	assert.Equal(t, keyspace.GPUHealthy, s.status.GPUs[0].Health)

	began := time.Now()
	p.signal(t, syscall.SIGTERM)
	assert.Equal(t, 0, p.wait(t, 5*time.Second))
	assert.Less(t, time.Since(began), 1500*time.Millisecond,
		"agent must exit within about a second of SIGTERM")

	after := h.mustRead()
	assert.Nil(t, after.status, "status key must be deleted at once")
	require.NotNil(t, after.info)
	require.NotNil(t, after.info.StoppedAt)
	assert.Equal(t, s.info.InstanceID, after.info.InstanceID)
	ttl, err := h.leaseTTL(s.lease)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl, "lease revoked")
}

func grantedTTL(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) int64 {
	resp, err := cli.TimeToLive(etcdtest.Ctx(t, 5*time.Second), id)
	require.NoError(t, err)
	return resp.GrantedTTL
}

// watchStatusDelete starts watching a status key and returns a channel
// that receives the time of its first deletion.
func watchStatusDelete(t *testing.T, cli *clientv3.Client, key string) <-chan time.Time {
	ctx := etcdtest.Ctx(t, time.Minute)
	w := cli.Watch(ctx, key)
	deleted := make(chan time.Time, 1)
	go func() {
		for resp := range w {
			for _, ev := range resp.Events {
				if ev.Type == mvccpb.DELETE {
					deleted <- time.Now()
					return
				}
			}
		}
	}()
	return deleted
}

func TestKill9StatusExpiresInfoRemains(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-kill")...)
	h := newHostKeys(t, c.Client, "/e2e", "node-kill")
	h.waitRegistered(10*time.Second, "")
	deleted := watchStatusDelete(t, c.Client, h.ks.HostStatus("node-kill"))

	killed := time.Now()
	p.signal(t, syscall.SIGKILL)
	select {
	case at := <-deleted:
		assert.Less(t, at.Sub(killed), testTTL+time.Second)
	case <-time.After(testTTL + time.Second):
		t.Fatalf("status key still present %s after kill -9", testTTL+time.Second)
	}

	after := h.mustRead()
	assert.Nil(t, after.status)
	require.NotNil(t, after.info, "info must outlive the agent")
	assert.Nil(t, after.info.StoppedAt, "a killed agent did not stop on purpose")
}

func TestKill9ThenRestartWaitsForOldLease(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	old := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-re")...)
	h := newHostKeys(t, c.Client, "/e2e", "node-re")
	before := h.waitRegistered(10*time.Second, "")

	old.signal(t, syscall.SIGKILL)
	old.wait(t, 5*time.Second)
	restarted := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-re")...)

	h.waitRegistered(testTTL+5*time.Second, before.info.InstanceID)
	assert.False(t, restarted.exited())
	assert.Contains(t, restarted.stderr.String(), "waiting for its lease to expire")
}

func TestSecondAgentWithSameHostIDIsRejected(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	first := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-dup")...)
	h := newHostKeys(t, c.Client, "/e2e", "node-dup")
	before := h.waitRegistered(10*time.Second, "")

	second := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-dup")...)
	code := second.wait(t, 3*testTTL+5*time.Second)
	assert.Equal(t, 1, code)
	out := second.stderr.String()
	assert.Contains(t, out, `host ID "node-dup" is already registered by a running agent`)
	assert.Contains(t, out, before.info.InstanceID)
	assert.Contains(t, out, "give this agent another --host-id")

	assert.False(t, first.exited(), "the first agent keeps running")
	after := h.mustRead()
	require.NotNil(t, after.status)
	assert.Equal(t, before.info.InstanceID, after.status.InstanceID)
	assert.Equal(t, before.lease, after.lease)
	assert.Equal(t, before.info.InstanceID, after.info.InstanceID)
}

func TestEtcdRestartReregisters(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-etcd")...)
	before := newHostKeys(t, c.Client, "/e2e", "node-etcd").
		waitRegistered(10*time.Second, "")

	c.Restart()

	// The status keeps being written after the restart (the maximum
	// interval between writes is 1 s), under a live lease.
	h := newHostKeys(t, newClient(t, c.Endpoint), "/e2e", "node-etcd")
	require.Eventually(t, func() bool {
		s, err := h.read()
		if err != nil || !s.registered("") || s.revision <= before.revision {
			return false
		}
		ttl, err := h.leaseTTL(s.lease)
		return err == nil && ttl > 0
	}, 15*time.Second, 100*time.Millisecond)
	assert.False(t, p.exited())
	assert.Equal(t, before.info.InstanceID, h.mustRead().info.InstanceID)
}

func TestEtcdOutageLongerThanTTLReregisters(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	p := startAgent(t, nil, runArgs(c.Endpoint, "/e2e", "node-outage")...)
	before := newHostKeys(t, c.Client, "/e2e", "node-outage").
		waitRegistered(10*time.Second, "")

	c.Stop()
	time.Sleep(testTTL + 1500*time.Millisecond)
	c.Restart()

	// The agent's keepalive gave up during the outage, so it registers
	// again under a new lease, and the old lease ends.
	h := newHostKeys(t, newClient(t, c.Endpoint), "/e2e", "node-outage")
	require.Eventually(t, func() bool {
		s, err := h.read()
		return err == nil && s.registered("") && s.lease != before.lease
	}, 15*time.Second, 100*time.Millisecond, "no new lease after the outage")
	require.Eventually(t, func() bool {
		ttl, err := h.leaseTTL(before.lease)
		return err == nil && ttl == -1
	}, 2*testTTL+2*time.Second, 100*time.Millisecond)
	assert.False(t, p.exited())
	assert.Equal(t, before.info.InstanceID, h.mustRead().info.InstanceID)
	assert.Contains(t, p.stderr.String(), "not registered; retrying")
}

func TestSIGTERMWithEtcdUnreachableExitsQuickly(t *testing.T) {
	t.Parallel()
	// Nothing listens on this port: etcd is unreachable from the start,
	// which must not stop the agent.
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", etcdtest.FreePort(t))
	p := startAgent(t, nil, runArgs(endpoint, "/e2e", "node-noetcd")...)
	require.Eventually(t, func() bool {
		return strings.Contains(p.stderr.String(), "not registered; retrying")
	}, 10*time.Second, 50*time.Millisecond)
	assert.False(t, p.exited())
	assert.Contains(t, p.stderr.String(), "cannot reach etcd at "+endpoint)
	assert.Contains(t, p.stderr.String(), "REMOTEGPU_ETCD_ENDPOINTS")

	began := time.Now()
	p.signal(t, syscall.SIGTERM)
	assert.Equal(t, 0, p.wait(t, 5*time.Second))
	assert.Less(t, time.Since(began), 1500*time.Millisecond)
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	startAgent(t, []string{
		"REMOTEGPU_ETCD_ENDPOINTS=" + c.Endpoint,
		"REMOTEGPU_PREFIX=/from-env",
		"REMOTEGPU_HOST_ID=env-node",
		"REMOTEGPU_TTL=3s",
		"REMOTEGPU_INTERVAL=500ms",
		"REMOTEGPU_LABEL=rack=r7,gpu=a100",
		"REMOTEGPU_GPU_BACKEND=none",
		"REMOTEGPU_LOG_FORMAT=json",
	}, "run")
	h := newHostKeys(t, c.Client, "/from-env", "env-node")

	s := h.waitRegistered(10*time.Second, "")
	assert.Equal(t, map[string]string{"rack": "r7", "gpu": "a100"}, s.info.Labels)
	assert.Empty(t, s.info.GPUs)
	assert.Equal(t, int64(3), grantedTTL(t, c.Client, s.lease))
}

func TestFlagOverridesEnvironment(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(agentBin, "inspect", "--host-id", "from-flag",
		"--gpu-backend", "none")
	cmd.Env = append(cmd.Environ(), "REMOTEGPU_HOST_ID=from-env")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), `"id": "from-flag"`)
}

func TestBadFlagsExitNonZero(t *testing.T) {
	t.Parallel()
	// No etcd: validation must fail before any connection.
	base := []string{"run", "--etcd-endpoints", "http://127.0.0.1:1",
		"--host-id", "bad-flags", "--gpu-backend", "none"}
	openPassword := filepath.Join(t.TempDir(), "etcd-password")
	require.NoError(t, os.WriteFile(openPassword, []byte("pw\n"), 0o600))
	require.NoError(t, os.Chmod(openPassword, 0o644))
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"ttl below etcd minimum", []string{"--ttl", "1s"}, nil,
			"invalid --ttl 1s"},
		{"ttl above maximum", []string{"--ttl", "100000h"}, nil,
			"invalid --ttl 100000h: a host that died would stay healthy " +
				"that long; use --ttl from 2s to 1h"},
		{"negative ttl", []string{"--ttl=-5s"}, nil,
			"invalid --ttl -5s: the TTL is negative; use --ttl from 2s to 1h"},
		{"NaN change threshold", []string{"--status-change-threshold", "NaN"},
			nil, "invalid --status-change-threshold NaN"},
		{"password file readable by others", []string{"--etcd-user", "u",
			"--etcd-password-file", openPassword}, nil,
			"--etcd-password-file: \"" + openPassword + "\" has mode 0644"},
		{"interval not below ttl", []string{"--ttl", "2s", "--interval", "2s"},
			nil, "invalid --interval 2s: must be less than --ttl 2s"},
		{"status interval below sampling",
			[]string{"--interval", "1s", "--status-max-interval", "500ms"},
			nil, "invalid --status-max-interval 500ms"},
		{"template does not parse", []string{"--advertise-addr", "{{ Nope }}"},
			nil, `invalid --advertise-addr template "{{ Nope }}"`},
		{"template yields nothing", []string{"--advertise-addr",
			`{{ GetAllInterfaces | include "name" "^absent0$" | attr "address" }}`},
			nil, "yields no address on this host"},
		{"label without value", []string{"--label", "zone"}, nil,
			`invalid --label "zone": use key=value`},
		{"label bad key", []string{"--label", "-zone=a"}, nil,
			`invalid --label "-zone=a"`},
		{"prefix without slash", []string{"--prefix", "remotegpu"}, nil,
			`invalid --prefix: invalid prefix "remotegpu"`},
		{"host id with slash", []string{"--host-id", "a/b"}, nil,
			"invalid --host-id"},
		{"unknown gpu backend", []string{"--gpu-backend", "cuda"}, nil,
			`invalid --gpu-backend "cuda"`},
		{"bad endpoint", []string{"--etcd-endpoints", "localhost"}, nil,
			`invalid etcd endpoint "localhost"`},
		{"unknown flag", []string{"--frobnicate"}, nil, "unknown flag"},
		{"bad env value", nil, []string{"REMOTEGPU_TTL=ten"},
			`invalid REMOTEGPU_TTL="ten"`},
		{"bad log level", []string{"--log-level", "loud"}, nil,
			`invalid --log-level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(agentBin, append(base, tt.args...)...)
			cmd.Env = append(cmd.Environ(), tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()

			var exitErr *exec.ExitError
			require.ErrorAs(t, err, &exitErr, "agent must fail")
			assert.Equal(t, 2, exitErr.ExitCode())
			assert.Contains(t, stderr.String(), tt.want)
		})
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"nosuchcommand"}, []string{
			`remotegpu-agent: unknown command "nosuchcommand" for "remotegpu-agent"`,
			"Run 'remotegpu-agent --help' for usage.",
		}},
		{[]string{"version", "extra"}, []string{
			`unknown command "extra" for "remotegpu-agent version"`,
			"Run 'remotegpu-agent version --help' for usage.",
		}},
		{[]string{"inspect", "--frobnicate"}, []string{
			"unknown flag: --frobnicate",
			"Run 'remotegpu-agent inspect --help' for usage.",
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(agentBin, tt.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()

			var exitErr *exec.ExitError
			require.ErrorAs(t, err, &exitErr, "agent must fail")
			assert.Equal(t, 2, exitErr.ExitCode())
			assert.Empty(t, stdout.String())
			for _, want := range tt.want {
				assert.Contains(t, stderr.String(), want)
			}
		})
	}
}

// decodeInspection checks inspect's output with the keyspace decoders.
func decodeInspection(t *testing.T, out []byte) (*keyspace.HostInfo, *keyspace.HostStatus) {
	t.Helper()
	var raw struct {
		Info   json.RawMessage `json:"info"`
		Status json.RawMessage `json:"status"`
	}
	require.NoError(t, json.Unmarshal(out, &raw), "output:\n%s", out)
	info, err := keyspace.DecodeHostInfo("inspect/info", raw.Info)
	require.NoError(t, err)
	status, err := keyspace.DecodeHostStatus("inspect/status", raw.Status)
	require.NoError(t, err)
	return info, status
}

func TestInspectSimulatedGPUs(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(agentBin, "inspect", "--host-id", "insp-1",
		"--gpu-backend", "mock-dgxa100", "--label", "pool=train")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())

	info, status := decodeInspection(t, out)
	assert.Equal(t, "insp-1", info.ID)
	assert.Equal(t, map[string]string{"pool": "train"}, info.Labels)
	require.Len(t, info.GPUs, 8)
	assert.Equal(t, gpu.SimulatedUUID("insp-1", 7), info.GPUs[7].UUID)
	require.Len(t, status.GPUs, 8)
	assert.Equal(t, info.TotalMemory, status.UsedMemory+status.AvailableMemory)
	assert.Contains(t, stderr.String(), "host ID chosen")
}

func TestInspectRealNVML(t *testing.T) {
	t.Parallel()
	// On a host without the NVIDIA driver, this proves that the
	// dynamically linked binary runs and reports zero GPUs. With a driver,
	// it reports the real GPUs.
	cmd := exec.Command(agentBin, "inspect", "--host-id", "insp-nvml")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())

	info, status := decodeInspection(t, out)
	if strings.Contains(stderr.String(), "no NVIDIA driver found") {
		assert.Empty(t, info.GPUs)
		assert.Empty(t, status.GPUs)
		assert.Contains(t, stderr.String(), "ERROR_LIBRARY_NOT_FOUND")
		assert.Contains(t, stderr.String(), "cannot load libnvidia-ml.so.1")
		assert.Contains(t, stderr.String(), "--gpu-backend none")
	}
	assert.Len(t, status.GPUs, len(info.GPUs))
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(agentBin, args...).CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		assert.Contains(t, string(out), "remotegpu-agent")
	}
}
