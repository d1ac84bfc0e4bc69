package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unitNames are the unit files under deploy/systemd. The example keeps its
// .example suffix in the repository so that it is not installed by
// accident.
var unitNames = []string{
	"remotegpu-agent.service",
	"remotegpu-coordinator.service",
	"etcd-member.service.example",
}

// unit is a parsed unit file: section, then key, then every value given
// for that key in file order.
type unit map[string]map[string][]string

// parseUnit reads a unit file the way systemd splits it: sections in
// brackets, key=value lines, '#' and ';' comments, and lines continued by
// a trailing backslash.
func parseUnit(t testing.TB, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	u := unit{}
	section := ""
	var pending string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		require.True(t, ok, "%s: line %q has no '='", path, line)
		require.NotEmpty(t, section, "%s: %q is outside a section", path, line)
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	require.NoError(t, scanner.Err())
	require.Empty(t, pending, "%s ends inside a continued line", path)
	return u
}

// value returns the last value of a key, which is the one systemd uses for
// single-valued settings, or "" when the key is missing.
func (u unit) value(section, key string) string {
	values := u[section][key]
	if len(values) == 0 {
		return ""
	}
	return values[len(values)-1]
}

func systemdAnalyze(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: install systemd to verify the unit files")
	}
	return path
}

// stageUnit copies a unit into dir under its installed name, with the
// ExecStart binary moved from /usr/local/bin into dir and replaced by a stub
// script, because "systemd-analyze verify" rejects a missing executable.
func stageUnit(t testing.TB, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	text := string(data)

	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, "ExecStart=/usr/local/bin/")
		if !ok {
			continue
		}
		name := strings.Fields(rest)[0]
		writeFile(t, dir, name, "#!/bin/sh\nexit 0\n", 0o755)
	}
	text = strings.ReplaceAll(text, "/usr/local/bin/", dir+"/")
	name := strings.TrimSuffix(filepath.Base(src), ".example")
	return writeFile(t, dir, name, text, 0o644)
}

// verifyUnit runs "systemd-analyze verify" on one unit file and returns
// its output and exit status. systemd reports many mistakes, such as an
// unknown key or an invalid value, only as a warning with status 0, so a
// caller must treat any output as a failure.
func verifyUnit(t testing.TB, analyzer, path string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyzer, "verify", "--man=no",
		"--generators=no", path)
	cmd.Env = append(cleanEnv(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "systemd-analyze verify timed out")
	if exitErr, ok := err.(*exec.ExitError); ok {
		return string(out), exitErr.ExitCode()
	}
	require.NoError(t, err)
	return string(out), 0
}

func TestUnitsPassSystemdVerify(t *testing.T) {
	t.Parallel()
	analyzer := systemdAnalyze(t)
	root := repoRoot(t)
	for _, name := range unitNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			staged := stageUnit(t, filepath.Join(root, "deploy", "systemd", name), t.TempDir())
			out, code := verifyUnit(t, analyzer, staged)
			assert.Equal(t, 0, code, "systemd-analyze verify exit status\n%s", out)
			assert.Empty(t, strings.TrimSpace(out), "systemd-analyze verify printed warnings")
		})
	}
}

func TestSystemdVerifyCatchesBrokenUnit(t *testing.T) {
	t.Parallel()
	analyzer := systemdAnalyze(t)
	src := filepath.Join(repoRoot(t), "deploy", "systemd", "remotegpu-agent.service")
	good, err := os.ReadFile(src)
	require.NoError(t, err)

	cases := []struct {
		name    string
		mutate  func(string) string
		message string
	}{
		{
			name: "unknown key",
			mutate: func(s string) string {
				return strings.Replace(s, "[Service]\n", "[Service]\nWatchDogSec=30s\n", 1)
			},
			message: "Unknown key",
		},
		{
			name: "invalid service type",
			mutate: func(s string) string {
				return strings.Replace(s, "Type=notify", "Type=notfy", 1)
			},
			message: "notfy",
		},
		{
			name: "missing executable",
			mutate: func(s string) string {
				return strings.Replace(s, "/usr/local/bin/remotegpu-agent run",
					"/nonexistent/remotegpu-agent run", 1)
			},
			message: "/nonexistent/remotegpu-agent",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			broken := writeFile(t, dir, "broken.service", tc.mutate(string(good)), 0o644)
			staged := stageUnit(t, broken, filepath.Join(dir, "staged"))
			require.NotEqual(t, string(good), readString(t, broken), "mutation changed nothing")

			out, code := verifyUnit(t, analyzer, staged)
			failed := code != 0 || strings.TrimSpace(out) != ""
			assert.True(t, failed, "a broken unit passed verification")
			assert.Contains(t, out, tc.message)
		})
	}
}

func TestUnitsSecurityExposure(t *testing.T) {
	t.Parallel()
	analyzer := systemdAnalyze(t)
	root := repoRoot(t)
	// systemd rates exposure from 0 (locked down) to 10; 3.0 and below is
	// "OK". The threshold flag takes the rating times ten.
	for _, name := range []string{"remotegpu-agent.service", "remotegpu-coordinator.service"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			staged := stageUnit(t, filepath.Join(root, "deploy", "systemd", name), t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, analyzer, "security", "--offline=yes",
				"--threshold=30", "--no-pager", staged)
			cmd.Env = append(cleanEnv(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
			out, err := cmd.CombinedOutput()
			assert.NoError(t, err, "exposure above 3.0:\n%s", out)
		})
	}
}

func readString(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

func TestDaemonUnitDirectives(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	cases := []struct {
		daemon    string
		execStart string
	}{
		{daemon: "agent", execStart: "/usr/local/bin/remotegpu-agent run"},
		{daemon: "coordinator", execStart: "/usr/local/bin/remotegpu-coordinator serve"},
	}
	for _, tc := range cases {
		t.Run(tc.daemon, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(root, "deploy", "systemd", "remotegpu-"+tc.daemon+".service")
			u := parseUnit(t, path)
			assertDaemonBasics(t, u, tc.daemon, tc.execStart)
			assertHardening(t, u)
			if tc.daemon == "agent" {
				assertAgentDevices(t, u)
			} else {
				assertCoordinatorState(t, u)
			}
		})
	}
}

func assertDaemonBasics(t *testing.T, u unit, daemon, execStart string) {
	t.Helper()
	s := "Service"
	assert.Equal(t, "notify", u.value(s, "Type"))
	assert.Equal(t, "main", u.value(s, "NotifyAccess"))
	assert.Equal(t, execStart, u.value(s, "ExecStart"))
	assert.Equal(t, "on-failure", u.value(s, "Restart"))
	assert.Equal(t, []string{"-/etc/remotegpu/" + daemon + ".env"}, u[s]["EnvironmentFile"])
	assert.Equal(t, "remotegpu", u.value(s, "User"))
	assert.Equal(t, "remotegpu", u.value(s, "Group"))
	assert.Equal(t, []string{"multi-user.target"}, u["Install"]["WantedBy"])
	assert.Contains(t, u.value("Unit", "After"), "network-online.target")

	watchdog, err := time.ParseDuration(u.value(s, "WatchdogSec"))
	require.NoError(t, err, "WatchdogSec=%q", u.value(s, "WatchdogSec"))
	assert.GreaterOrEqual(t, watchdog, 10*time.Second,
		"a short watchdog kills a daemon stalled briefly on etcd")
	stop, err := time.ParseDuration(u.value(s, "TimeoutStopSec"))
	require.NoError(t, err, "TimeoutStopSec=%q", u.value(s, "TimeoutStopSec"))
	assert.Greater(t, stop, 10*time.Second, "leave time to revoke the lease")
}

func assertHardening(t *testing.T, u unit) {
	t.Helper()
	want := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"SystemCallArchitectures": "native",
		"CapabilityBoundingSet":   "",
		"UMask":                   "0077",
		// AF_NETLINK lists interfaces for go-sockaddr; AF_UNIX carries
		// sd_notify.
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
	}
	for key, value := range want {
		values, ok := u["Service"][key]
		if assert.True(t, ok, "%s is missing", key) {
			assert.Equal(t, value, values[len(values)-1], key)
		}
	}
	assert.Contains(t, u["Service"]["SystemCallFilter"], "@system-service")
}

func assertAgentDevices(t *testing.T, u unit) {
	t.Helper()
	s := "Service"
	assert.Equal(t, "closed", u.value(s, "DevicePolicy"))
	allowed := u[s]["DeviceAllow"]
	for _, want := range []string{"/dev/nvidiactl rw", "/dev/nvidia-uvm rw", "char-nvidia* rw"} {
		assert.Contains(t, allowed, want)
	}
	// NVML needs the real /dev and the agent needs every process in /proc.
	assert.NotEqual(t, "yes", u.value(s, "PrivateDevices"))
	assert.Empty(t, u.value(s, "ProtectProc"))
	assert.Empty(t, u.value(s, "ProcSubset"))
	// The agent keeps no state on disk.
	assert.Empty(t, u.value(s, "StateDirectory"))
}

func assertCoordinatorState(t *testing.T, u unit) {
	t.Helper()
	s := "Service"
	assert.Equal(t, "remotegpu", u.value(s, "StateDirectory"))
	assert.Equal(t, "0700", u.value(s, "StateDirectoryMode"),
		"etcd wants its data directory private")
	// The data dir comes from STATE_DIRECTORY, the default of --data-dir.
	// A REMOTEGPU_* variable set here would count as a flag given and
	// clash with REMOTEGPU_ETCD_ENDPOINTS from the env file.
	for _, env := range u[s]["Environment"] {
		assert.NotContains(t, env, "REMOTEGPU_", "Environment=%s", env)
	}
	assert.Equal(t, "yes", u.value(s, "PrivateDevices"))
	assert.Empty(t, u[s]["DeviceAllow"])
}

func TestEtcdMemberExampleUsesTLS(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "deploy", "systemd", "etcd-member.service.example")
	u := parseUnit(t, path)
	assert.Equal(t, "notify", u.value("Service", "Type"))

	flags := map[string]string{}
	for _, arg := range strings.Fields(u.value("Service", "ExecStart"))[1:] {
		name, value, ok := strings.Cut(arg, "=")
		require.True(t, ok, "etcd flag %q is not --name=value", arg)
		flags[name] = value
	}
	for _, name := range []string{
		"--name", "--data-dir", "--listen-client-urls", "--advertise-client-urls",
		"--listen-peer-urls", "--initial-advertise-peer-urls", "--initial-cluster",
		"--trusted-ca-file", "--cert-file", "--key-file",
		"--peer-trusted-ca-file", "--peer-cert-file", "--peer-key-file",
	} {
		assert.NotEmpty(t, flags[name], "flag %s", name)
	}
	assert.Equal(t, "true", flags["--client-cert-auth"])
	assert.Equal(t, "true", flags["--peer-client-cert-auth"])

	members := strings.Split(flags["--initial-cluster"], ",")
	assert.Len(t, members, 3)
	urlFlags := []string{"--listen-client-urls", "--advertise-client-urls",
		"--listen-peer-urls", "--initial-advertise-peer-urls"}
	var urls []string
	for _, name := range urlFlags {
		urls = append(urls, strings.Split(flags[name], ",")...)
	}
	for _, m := range members {
		_, url, _ := strings.Cut(m, "=")
		urls = append(urls, url)
	}
	for _, url := range urls {
		assert.True(t, strings.HasPrefix(url, "https://"), "%s is not TLS", url)
	}
}
