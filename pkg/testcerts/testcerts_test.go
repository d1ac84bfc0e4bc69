package testcerts

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateChainsToCA(t *testing.T) {
	t.Parallel()
	f := Generate(t, t.TempDir())
	caPEM, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	for _, tc := range []struct {
		cert, key string
		usage     x509.ExtKeyUsage
	}{
		{f.ServerCert, f.ServerKey, x509.ExtKeyUsageServerAuth},
		{f.ClientCert, f.ClientKey, x509.ExtKeyUsageClientAuth},
	} {
		pair, err := tls.LoadX509KeyPair(tc.cert, tc.key)
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		_, err = leaf.Verify(x509.VerifyOptions{
			Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.usage},
		})
		assert.NoError(t, err, tc.cert)
	}
}
