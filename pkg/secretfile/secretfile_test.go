package secretfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modeCases are the permission bits every reader of a secret file must
// accept or reject.
var modeCases = []struct {
	name    string
	mode    os.FileMode
	wantErr string
}{
	{"owner read write", 0o600, ""},
	{"owner read only", 0o400, ""},
	{"group readable", 0o640, "has mode 0640"},
	{"others readable", 0o604, "has mode 0604"},
	{"group writable", 0o620, "has mode 0620"},
	{"everyone readable", 0o644, "has mode 0644"},
}

func writeSecret(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte("s3cret\n"), 0o600))
	// Chmod, because WriteFile's mode passes through the umask.
	require.NoError(t, os.Chmod(path, mode))
	return path
}

func TestReadChecksMode(t *testing.T) {
	t.Parallel()
	for _, tc := range modeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeSecret(t, t.TempDir(), "secret", tc.mode)
			data, err := Read(path)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, "s3cret\n", string(data))
				return
			}
			var modeErr *ModeError
			require.ErrorAs(t, err, &modeErr)
			assert.Equal(t, path, modeErr.Path)
			assert.Equal(t, tc.mode, modeErr.Mode.Perm())
			assert.ErrorContains(t, err, tc.wantErr)
			assert.ErrorContains(t, err, "run chmod 600 "+path)
			assert.NotContains(t, err.Error(), "s3cret")
			assert.Nil(t, data)
		})
	}
}

func TestCheckModeChecksMode(t *testing.T) {
	t.Parallel()
	for _, tc := range modeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeSecret(t, t.TempDir(), "key.pem", tc.mode)
			err := CheckMode(path)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
			assert.ErrorContains(t, err, "run chmod 600 "+path)
		})
	}
}

func TestCheckModeFollowsSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := writeSecret(t, dir, "target", 0o644)
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(target, link))

	assert.ErrorContains(t, CheckMode(link), "has mode 0644")
	_, err := Read(link)
	assert.ErrorContains(t, err, "has mode 0644")
}

func TestMissingFileKeepsOSError(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := Read(missing)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorIs(t, CheckMode(missing), os.ErrNotExist)
}

func TestChmodHintQuotesOddPaths(t *testing.T) {
	t.Parallel()
	path := writeSecret(t, t.TempDir(), "my token's file", 0o644)
	err := CheckMode(path)
	assert.ErrorContains(t, err, `run chmod 600 '`)
	assert.ErrorContains(t, err, `my token'\''s file'`)
}

func TestDirectoryIsNotASecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := Read(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not a regular file")
	assert.NotContains(t, err.Error(), "chmod")

	err = CheckMode(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not a regular file")
}
