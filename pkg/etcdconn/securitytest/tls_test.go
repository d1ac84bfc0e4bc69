package securitytest

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
	"github.com/YoungBoyGod/remotegpu/pkg/testcerts"
)

// startTLSEtcd starts an embedded etcd whose client URL serves TLS only
// and requires a client certificate signed by the test CA.
func startTLSEtcd(t *testing.T, certs testcerts.Files) string {
	t.Helper()
	ports := harness.FreePorts(t, 2)
	endpoint := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	srv, err := etcdembed.Start(etcdembed.Config{
		DataDir:      filepath.Join(t.TempDir(), "etcd"),
		ClientURL:    endpoint,
		PeerURL:      "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		CertFile:     certs.ServerCert,
		KeyFile:      certs.ServerKey,
		ClientCAFile: certs.CA,
	})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return endpoint
}

func TestDaemonsUseEtcdClientCertificates(t *testing.T) {
	t.Parallel()
	bin := build(t)
	certs := testcerts.Generate(t, t.TempDir())
	endpoint := startTLSEtcd(t, certs)
	tlsFlags := []string{
		"--etcd-endpoints", endpoint, "--etcd-cacert", certs.CA,
		"--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey,
	}

	listen := apiListen(t)
	coord := start(t, "coordinator", bin.coordinator, append([]string{"serve",
		"--listen", listen}, tlsFlags...)...)
	agent := start(t, "agent", bin.agent, append([]string{"run",
		"--host-id", "tls-1", "--gpu-backend", "mock-dgxa100",
		"--ttl", "3s", "--interval", "500ms", "--metrics-listen", ""},
		tlsFlags...)...)

	base := "http://" + listen
	waitHealthy(t, base, "tls-1", coord, agent)
	code, body := allocate(t, base, "")
	require.Equal(t, http.StatusCreated, code, body)
	assert.Contains(t, body, `"host_id":"tls-1"`)

	// An agent with the CA but without a client certificate is turned
	// away by etcd's TLS handshake and reports it.
	noCert := start(t, "agent-no-cert", bin.agent, "run",
		"--host-id", "tls-2", "--gpu-backend", "none", "--ttl", "3s",
		"--metrics-listen", "", "--etcd-endpoints", endpoint,
		"--etcd-cacert", certs.CA)
	require.Eventually(t, func() bool {
		return strings.Contains(noCert.Logs(),
			"TLS handshake with etcd at "+endpoint+" failed")
	}, 20*time.Second, 200*time.Millisecond, "no TLS error logged:\n%s",
		noCert.Logs())
	assert.Contains(t, noCert.Logs(), "certificate required")
	assert.Contains(t, noCert.Logs(), "--etcd-cert with --etcd-key")

	assert.Equal(t, 0, agent.Terminate(10*time.Second).Code)
	assert.Equal(t, 0, coord.Terminate(30*time.Second).Code)
}
