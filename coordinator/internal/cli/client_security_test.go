package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/secretfile"
)

func TestTokenFileMode(t *testing.T) {
	t.Parallel()
	const token = "cli-token-MARKER-4b7e19d2c0"
	cases := []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"0600 accepted", 0o600, true},
		{"0400 accepted", 0o400, true},
		{"0640 rejected", 0o640, false},
		{"0604 rejected", 0o604, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "token")
			require.NoError(t, os.WriteFile(path, []byte(token+"\n"), 0o600))
			require.NoError(t, os.Chmod(path, tc.mode))

			o := clientOptions{tokenFile: path}
			opts, err := o.securityOptions()
			if tc.ok {
				require.NoError(t, err)
				assert.Len(t, opts, 1)
				return
			}
			var modeErr *secretfile.ModeError
			require.ErrorAs(t, err, &modeErr)
			msg := err.Error()
			assert.Contains(t, msg, "--token-file: ")
			assert.Contains(t, msg, path)
			assert.Contains(t, msg, fmt.Sprintf("has mode %04o", uint32(tc.mode)))
			assert.Contains(t, msg, "chmod 600 "+path)
			assert.NotContains(t, msg, token)
		})
	}
}

func TestCommandsRejectOpenTokenFile(t *testing.T) {
	t.Parallel()
	const token = "open-token-MARKER-93c1e0f7aa"
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(token+"\n"), 0o600))
	require.NoError(t, os.Chmod(path, 0o644))
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))

	cases := map[string]struct {
		args func(dataDir string) []string
		flag string
	}{
		"serve": {
			args: func(dataDir string) []string {
				return []string{"serve", "--listen", listen,
					"--data-dir", dataDir, "--auth-token-file", path}
			},
			flag: "--auth-token-file: ",
		},
		"client": {
			args: func(string) []string {
				return []string{"hosts", "--addr", "http://" + listen,
					"--token-file", path}
			},
			flag: "--token-file: ",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			code, _, stderr := run(t, tc.args(dataDir)...)
			assert.NotEqual(t, 0, code)
			assert.Contains(t, stderr, tc.flag)
			assert.Contains(t, stderr, path+`" has mode 0644`)
			assert.Contains(t, stderr, "chmod 600 "+path)
			assert.NotContains(t, stderr, token)
			assert.NoDirExists(t, dataDir, "the token file is checked before etcd starts")
		})
	}
}
