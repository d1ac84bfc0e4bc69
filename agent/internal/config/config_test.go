package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestValidateTiming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                     string
		ttl, interval, statusMax time.Duration
		wantErr                  string
	}{
		{"defaults", DefaultTTL, DefaultInterval, DefaultStatusMaxInterval, ""},
		{"smallest ttl", 2 * time.Second, time.Second, time.Second, ""},
		{"ttl below etcd minimum", 1500 * time.Millisecond, time.Second,
			time.Second, "invalid --ttl 1.5s: etcd raises lease TTLs below 2s " +
				"to its minimum; use --ttl from 2s to 1h"},
		{"largest ttl", time.Hour, time.Second, time.Second, ""},
		{"ttl above maximum", time.Hour + time.Second, time.Second, time.Second,
			"invalid --ttl 1h0m1s: a host that died would stay healthy that " +
				"long; use --ttl from 2s to 1h"},
		{"huge ttl", 100000 * time.Hour, time.Second, time.Second,
			"invalid --ttl 100000h: a host that died would stay healthy"},
		{"negative ttl", -5 * time.Second, time.Second, time.Second,
			"invalid --ttl -5s: the TTL is negative; use --ttl from 2s to 1h"},
		{"zero ttl", 0, time.Second, time.Second,
			"invalid --ttl 0s: the TTL must be positive; use --ttl from 2s to 1h"},
		{"interval equals ttl", 5 * time.Second, 5 * time.Second, time.Minute,
			"invalid --interval 5s: must be less than --ttl 5s"},
		{"fractional ttl", 2500 * time.Millisecond, time.Second, time.Second,
			"invalid --ttl 2.5s: etcd lease TTLs are whole seconds; use --ttl 2s or 3s"},
		{"zero interval", 5 * time.Second, 0, time.Minute,
			"invalid --interval 0s: use at least 100ms"},
		{"tiny interval", 5 * time.Second, time.Millisecond, time.Minute,
			"invalid --interval 1ms: use at least 100ms"},
		{"status max below interval", 5 * time.Second, 2 * time.Second,
			time.Second, "invalid --status-max-interval 1s: must be at least --interval 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTiming(tt.ttl, tt.interval, tt.statusMax)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestParseLabels(t *testing.T) {
	t.Parallel()
	got, err := ParseLabels([]string{"zone=eu-1", "gpu/model=a100", "empty="})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"zone": "eu-1", "gpu/model": "a100", "empty": "",
	}, got)

	bad := []struct {
		label, want string
	}{
		{"zone", `invalid --label "zone": use key=value`},
		{"=v", "key must be 1 to 63 characters long"},
		{"-zone=a", "must start and end with a letter or digit"},
		{"zo ne=a", `contains ' '`},
		{"zone=a b", `value "a b" contains ' '`},
		{strings.Repeat("k", 64) + "=v", "key must be 1 to 63"},
		{"k=" + strings.Repeat("v", 129), "more than the maximum of 128"},
	}
	for _, tt := range bad {
		_, err := ParseLabels([]string{tt.label})
		require.Error(t, err, tt.label)
		assert.Contains(t, err.Error(), tt.want)
	}

	_, err = ParseLabels([]string{"a=1", "a=2"})
	assert.ErrorContains(t, err, `key "a" is already set to "1"`)
}

func TestResolveHostID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	machineID := filepath.Join(dir, "machine-id")
	require.NoError(t, os.WriteFile(machineID,
		[]byte("3d1219c7c4c5404aaa1f6d2a48adfda4\n"), 0o644))
	badID := filepath.Join(dir, "bad-machine-id")
	require.NoError(t, os.WriteFile(badID, []byte("not/valid\n"), 0o644))
	missing := filepath.Join(dir, "missing")
	hostname := func() (string, error) { return "gpu-07", nil }
	noHostname := func() (string, error) { return "", errors.New("no uts") }

	tests := []struct {
		name       string
		flag, path string
		hostname   func() (string, error)
		wantID     string
		wantSource string
		wantErr    string
	}{
		{"flag wins", "node-1", machineID, hostname, "node-1", HostIDFromFlag, ""},
		{"machine id", "", machineID, hostname,
			"3d1219c7c4c5404aaa1f6d2a48adfda4", HostIDFromMachineID, ""},
		{"hostname without machine id", "", missing, hostname,
			"gpu-07", HostIDFromHostname, ""},
		{"hostname after invalid machine id", "", badID, hostname,
			"gpu-07", HostIDFromHostname, ""},
		{"invalid flag", "a/b", machineID, hostname, "", "",
			"invalid --host-id"},
		{"nothing usable", "", missing, noHostname, "", "",
			"no usable host ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveHostID(tt.flag, tt.path, tt.hostname)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantID, got.ID)
			assert.Equal(t, tt.wantSource, got.Source)
		})
	}

	got, err := ResolveHostID("", badID, hostname)
	require.NoError(t, err)
	require.Len(t, got.Skipped, 1)
	assert.Contains(t, got.Skipped[0], badID)

	_, err = ResolveHostID("", missing, noHostname)
	assert.ErrorIs(t, err, ErrNoHostID)
	assert.ErrorContains(t, err, "set --host-id")
}

func parsed(t *testing.T, args ...string) *Config {
	t.Helper()
	var c Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.AddHostFlags(fs)
	c.AddRunFlags(fs)
	require.NoError(t, fs.Parse(args))
	return &c
}

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	c := parsed(t)
	require.NoError(t, c.ValidateRun())
	assert.Equal(t, []string{"http://127.0.0.1:2379"}, c.Etcd.Endpoints)
	assert.Equal(t, "/remotegpu", c.Prefix)
	assert.Equal(t, BackendNVML, c.GPUBackend)
	assert.Equal(t, 10*time.Second, c.TTL)
}

func TestValidateRunNamesTheFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--prefix", "x"}, "invalid --prefix"},
		{[]string{"--status-change-threshold", "0"}, "invalid --status-change-threshold 0"},
		{[]string{"--status-change-threshold", "NaN"}, "invalid --status-change-threshold NaN"},
		{[]string{"--status-change-threshold", "+Inf"}, "invalid --status-change-threshold +Inf"},
		{[]string{"--status-change-threshold", "-1"}, "invalid --status-change-threshold -1"},
		{[]string{"--ttl", "100000h"}, "invalid --ttl 100000h: a host that died"},
		{[]string{"--ttl", "-5s"}, "invalid --ttl -5s: the TTL is negative"},
		{[]string{"--gpu-backend", "rocm"}, `invalid --gpu-backend "rocm"`},
		{[]string{"--gpu-recovery-period", "0s"}, "invalid --gpu-recovery-period 0s"},
		{[]string{"--name", "a\tb"}, "invalid --name"},
		{[]string{"--log-format", "xml"}, `invalid --log-format "xml"`},
		{[]string{"--etcd-endpoints", "127.0.0.1:2379"}, "invalid etcd endpoint"},
	}
	for _, tt := range tests {
		err := parsed(t, tt.args...).ValidateRun()
		require.Error(t, err, "%v", tt.args)
		assert.Contains(t, err.Error(), tt.want)
	}
}
