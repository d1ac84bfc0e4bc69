package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestThreadStateParsesNameWithSpaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stat")
	line := "4242 (etcd member) x) T 1 4242 4242 0 -1 4194560\n"
	require.NoError(t, os.WriteFile(path, []byte(line), 0o644))
	state, err := threadState(path)
	require.NoError(t, err)
	require.Equal(t, byte('T'), state)
}

func TestAllThreadsStoppedOnRunningProcess(t *testing.T) {
	stopped, err := allThreadsStopped(os.Getpid())
	require.NoError(t, err)
	require.False(t, stopped)
}

func TestAllThreadsStoppedMissingProcess(t *testing.T) {
	_, err := allThreadsStopped(-1)
	require.Error(t, err)
}
