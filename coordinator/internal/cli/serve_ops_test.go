package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
	"github.com/YoungBoyGod/remotegpu/pkg/testcerts"
)

const testToken = "serve-test-token-0123456789abcdef"

// testHTTPS returns a client that trusts only the test CA.
func testHTTPS(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
}

func TestServeTLSTokenAndMetrics(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.Start(t)
	dir := t.TempDir()
	certs := testcerts.Generate(t, dir)
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600))

	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	base := "https://" + listen
	s := startServe(t, []string{"serve", "--listen", listen,
		"--etcd-endpoints", cluster.Endpoint, "--prefix", "/sec",
		"--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey,
		"--auth-token-file", tokenFile, "--log-level", "debug"})
	hc := testHTTPS(t, certs.CA)
	reader, err := client.New(base, client.WithHTTPClient(hc),
		client.WithRetry(1, time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	waitReady(t, reader, s)

	ks, err := keyspace.New("/sec")
	require.NoError(t, err)
	putAgent(t, cluster.Client, ks, "gpu-s", 2)
	require.Eventually(t, func() bool {
		h, err := reader.GetHost(context.Background(), "gpu-s")
		return err == nil && h.Health == api.HealthHealthy
	}, 10*time.Second, 20*time.Millisecond)

	t.Run("plain HTTP is rejected", func(t *testing.T) {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err == nil {
			defer resp.Body.Close()
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		}
	})
	t.Run("mutation without token is 401", func(t *testing.T) {
		_, _, err := reader.Allocate(context.Background(),
			api.AllocationRequest{GPU: 1})
		var apiErr *client.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
		assert.Equal(t, api.CodeUnauthorized, apiErr.Code)
	})
	t.Run("CLI without token fails", func(t *testing.T) {
		code, _, stderr := run(t, "allocate", "--addr", base, "--cacert", certs.CA,
			"--gpu", "1")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "missing bearer token")
	})
	t.Run("CLI with token allocates", func(t *testing.T) {
		code, stdout, stderr := run(t, "allocate", "--addr", base,
			"--cacert", certs.CA, "--token-file", tokenFile, "--gpu", "1", "--json")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, `"host_id": "gpu-s"`)
	})
	t.Run("CLI without CA rejects the certificate", func(t *testing.T) {
		code, _, stderr := run(t, "hosts", "--addr", base)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "certificate")
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := hc.Get(base + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		require.NoError(t, err)

		assert.Equal(t, 1.0, gaugeValue(fams, "remotegpu_coordinator_hosts", "health", "healthy"))
		assert.Equal(t, 0.0, gaugeValue(fams, "remotegpu_coordinator_hosts", "health", "unhealthy"))
		assert.Equal(t, 1.0, gaugeValue(fams, "remotegpu_coordinator_allocations", "state", "active"))
		hist := fams["remotegpu_coordinator_allocation_duration_seconds"]
		require.NotNil(t, hist)
		var created uint64
		for _, m := range hist.GetMetric() {
			if labelValue(m.GetLabel(), "outcome") == "created" {
				created = m.GetHistogram().GetSampleCount()
			}
		}
		assert.Equal(t, uint64(1), created)
		assert.Contains(t, fams, "go_goroutines")
		assert.Contains(t, fams, "process_cpu_seconds_total")
	})

	require.Equal(t, 0, s.stop(t))
	assert.NotContains(t, s.stderr.String(), testToken)
	assert.NotContains(t, s.stderr.String(), "beyond loopback")
}

func TestServeSecurityFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("changeme"), 0o600))
	certs := testcerts.Generate(t, dir)
	require.NoError(t, os.Chmod(certs.ServerKey, 0o644))
	listen := fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))

	cases := map[string]struct {
		args []string
		want string
		code int
	}{
		"certificate without key": {
			args: []string{"--tls-cert-file", "/nonexistent.pem"},
			want: "--tls-cert-file and --tls-key-file go together",
			code: 2,
		},
		"missing certificate": {
			args: []string{"--tls-cert-file", filepath.Join(dir, "none.pem"),
				"--tls-key-file", filepath.Join(dir, "none-key.pem")},
			want: "load --tls-cert-file",
			code: 1,
		},
		"key readable by others": {
			args: []string{"--tls-cert-file", certs.ServerCert,
				"--tls-key-file", certs.ServerKey},
			want: "--tls-key-file: ",
			code: 1,
		},
		"etcd user without password, embedded etcd": {
			args: []string{"--etcd-user", "root"},
			want: "--etcd-user and --etcd-password-file must be given together",
			code: 2,
		},
		"short token": {
			args: []string{"--auth-token-file", short},
			want: "--auth-token-file: invalid token",
			code: 1,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--listen", listen,
				"--data-dir", dataDir}, tc.args...)
			code, _, stderr := run(t, args...)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, stderr, tc.want)
			assert.NoDirExists(t, dataDir, "flags are checked before etcd starts")
		})
	}
}

// addrListener is a listener that reports another address.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

func TestWarnWithoutTokenBeyondLoopback(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()

	cases := []struct {
		ip   net.IP
		warn bool
	}{
		{net.IPv4(127, 0, 0, 1), false},
		{net.IPv6loopback, false},
		{net.IPv4zero, true},
		{net.ParseIP("10.0.0.5"), true},
	}
	for _, tc := range cases {
		t.Run(tc.ip.String(), func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			fake := addrListener{Listener: l, addr: &net.TCPAddr{IP: tc.ip, Port: 8080}}
			_, _, err := newOps(&opsOptions{}, fake, log)
			require.NoError(t, err)
			assert.Equal(t, tc.warn, strings.Contains(logs.String(), "beyond loopback"),
				"logs: %s", logs.String())
		})
	}
}

func gaugeValue(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	fam, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range fam.GetMetric() {
		if labelValue(m.GetLabel(), label) == value {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func labelValue(labels []*dto.LabelPair, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
