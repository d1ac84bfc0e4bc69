package cliutil

import (
	"bytes"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func lookupFrom(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestEnvName(t *testing.T) {
	assert.Equal(t, "REMOTEGPU_ETCD_ENDPOINTS", EnvName("etcd-endpoints"))
	assert.Equal(t, "REMOTEGPU_TTL", EnvName("ttl"))
}

func TestApplyEnvSetsUnsetFlags(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	ttl := fs.Duration("ttl", 10*time.Second, "")
	name := fs.String("name", "default", "")
	endpoints := fs.StringSlice("etcd-endpoints", nil, "")
	require.NoError(t, fs.Parse([]string{"--name", "cli"}))

	err := ApplyEnv(fs, lookupFrom(map[string]string{
		"REMOTEGPU_TTL":            "4s",
		"REMOTEGPU_NAME":           "env",
		"REMOTEGPU_ETCD_ENDPOINTS": "http://127.0.0.1:1, ,http://127.0.0.1:2",
	}))
	require.NoError(t, err)

	assert.Equal(t, 4*time.Second, *ttl)
	assert.Equal(t, "cli", *name, "the command line must win over the environment")
	assert.Equal(t, []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, *endpoints)
	assert.True(t, fs.Lookup("ttl").Changed)
	assert.True(t, fs.Lookup("etcd-endpoints").Changed,
		"a list flag set from the environment must count as given")
}

func TestApplyEnvLeavesFlagsWithoutVariable(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	endpoints := fs.StringSlice("etcd-endpoints", []string{"http://127.0.0.1:2379"}, "")
	require.NoError(t, ApplyEnv(fs, lookupFrom(nil)))
	assert.Equal(t, []string{"http://127.0.0.1:2379"}, *endpoints)
	assert.False(t, fs.Lookup("etcd-endpoints").Changed)
}

func TestApplyEnvInvalidValue(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Duration("ttl", 10*time.Second, "")
	err := ApplyEnv(fs, lookupFrom(map[string]string{"REMOTEGPU_TTL": "soon"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `REMOTEGPU_TTL="soon"`)
}

func TestLogConfigRejectsUnknownFormat(t *testing.T) {
	c := LogConfig{Format: "xml", Level: "info"}
	_, err := c.NewLogger(&bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "xml")
}
