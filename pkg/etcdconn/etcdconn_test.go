package etcdconn

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/testcerts"
)

// secretModes are the modes every secret file flag must accept or reject.
var secretModes = []struct {
	name string
	mode os.FileMode
	ok   bool
}{
	{"0600 accepted", 0o600, true},
	{"0400 accepted", 0o400, true},
	{"0640 rejected", 0o640, false},
	{"0604 rejected", 0o604, false},
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	require.NoError(t, os.Chmod(path, mode))
}

func TestPasswordFileMode(t *testing.T) {
	t.Parallel()
	for _, tc := range secretModes {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "etcd-password")
			require.NoError(t, os.WriteFile(path, []byte("pw-MARKER\n"), 0o600))
			chmod(t, path, tc.mode)
			c := Config{
				Endpoints:    []string{DefaultEndpoint},
				User:         "root",
				PasswordFile: path,
				DialTimeout:  time.Second,
			}

			cfg, err := c.ClientConfig()
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, "pw-MARKER", cfg.Password)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "--etcd-password-file: ")
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "has mode "+modeText(tc.mode))
			assert.Contains(t, err.Error(), "chmod 600 "+path)
			assert.NotContains(t, err.Error(), "pw-MARKER")
		})
	}
}

func TestKeyFileMode(t *testing.T) {
	t.Parallel()
	for _, tc := range secretModes {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			certs := testcerts.Generate(t, t.TempDir())
			chmod(t, certs.ClientKey, tc.mode)
			c := Config{
				Endpoints:   []string{"https://127.0.0.1:2379"},
				CACertFile:  certs.CA,
				CertFile:    certs.ClientCert,
				KeyFile:     certs.ClientKey,
				DialTimeout: time.Second,
			}

			cfg, err := c.TLS()
			if tc.ok {
				require.NoError(t, err)
				assert.NotNil(t, cfg)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "--etcd-key: ")
			assert.Contains(t, err.Error(), certs.ClientKey)
			assert.Contains(t, err.Error(), "has mode "+modeText(tc.mode))
			assert.Contains(t, err.Error(), "chmod 600 "+certs.ClientKey)
		})
	}
}

func TestCertificateModeIsNotChecked(t *testing.T) {
	t.Parallel()
	// Certificates and CA bundles are public; only the key is secret.
	certs := testcerts.Generate(t, t.TempDir())
	chmod(t, certs.CA, 0o644)
	chmod(t, certs.ClientCert, 0o644)
	c := Config{
		Endpoints:  []string{"https://127.0.0.1:2379"},
		CACertFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey,
		DialTimeout: time.Second,
	}
	_, err := c.TLS()
	require.NoError(t, err)
}

func modeText(mode os.FileMode) string {
	return fmt.Sprintf("%04o", uint32(mode))
}
