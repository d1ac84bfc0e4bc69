// Package testcerts writes a throwaway certificate authority with a
// server and a client certificate for tests of TLS and client
// certificate authentication. The keys are ECDSA P-256, valid for one
// hour, and never leave the test's temporary folder; nothing here is fit
// for production use.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Files are the PEM files Generate writes.
type Files struct {
	// CA is the certificate of the authority that signed the others.
	CA string
	// ServerCert and ServerKey are valid for 127.0.0.1, ::1 and
	// localhost.
	ServerCert, ServerKey string
	// ClientCert and ClientKey carry the common name "remotegpu-test"
	// and the client-auth usage.
	ClientCert, ClientKey string
}

// Generate writes a new CA, server and client certificate into dir.
func Generate(t testing.TB, dir string) Files {
	t.Helper()
	caKey := newKey(t)
	caTmpl := template(t, "remotegpu test CA")
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl,
		&caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	f := Files{CA: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}

	server := template(t, "127.0.0.1")
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	server.DNSNames = []string{"localhost"}
	f.ServerCert, f.ServerKey = issue(t, dir, "server", server, ca, caKey)

	client := template(t, "remotegpu-test")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	f.ClientCert, f.ClientKey = issue(t, dir, "client", client, ca, caKey)
	return f
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key
}

func template(t testing.TB, cn string) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// issue signs tmpl with the CA and writes the certificate and its key.
func issue(t testing.TB, dir, name string, tmpl, ca *x509.Certificate,
	caKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der),
		writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	path := filepath.Join(dir, name)
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}
