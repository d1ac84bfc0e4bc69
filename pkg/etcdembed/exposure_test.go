package etcdembed

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExposureReason(t *testing.T) {
	tests := []struct {
		url            string
		clientCertAuth bool
		authEnabled    bool
		want           string
	}{
		{"http://127.0.0.1:2379", false, false, ""},
		{"http://127.1.2.3:2379", false, false, ""},
		{"http://[::1]:2379", false, false, ""},
		{"http://localhost:2379", false, false, ""},
		{"https://127.0.0.1:2379", false, false, ""},
		{"http://0.0.0.0:2379", false, false, "no TLS and no etcd authentication"},
		{"http://[::]:2379", false, false, "no TLS and no etcd authentication"},
		{"http://10.0.0.5:2379", false, false, "no TLS and no etcd authentication"},
		{"http://etcd.example:2379", false, false, "no TLS and no etcd authentication"},
		{"http://0.0.0.0:2379", false, true, "no TLS: etcd passwords"},
		{"https://0.0.0.0:2379", false, false, "no client certificate check"},
		{"https://0.0.0.0:2379", true, false, ""},
		{"https://0.0.0.0:2379", false, true, ""},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s cert=%t auth=%t", tt.url, tt.clientCertAuth,
			tt.authEnabled)
		t.Run(name, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			require.NoError(t, err)
			got := exposureReason(u, tt.clientCertAuth, tt.authEnabled)
			if tt.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tt.want)
		})
	}
}

// captureLog returns a logger that writes text lines into the buffer.
func captureLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestWarnIfExposedLogs(t *testing.T) {
	log, buf := captureLog()
	cfg := Config{ClientURL: "http://0.0.0.0:2379", Logger: log}
	cfg.warnIfExposed(false)

	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "\n"), "log: %s", out)
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, "etcd_client_url=http://0.0.0.0:2379")
	assert.Contains(t, out, "no TLS and no etcd authentication")
	assert.Contains(t, out, "http://127.0.0.1:2379")
	assert.Contains(t, out, "CertFile")
}

func TestStartOnLoopbackDoesNotWarn(t *testing.T) {
	log, buf := captureLog()
	cfg := Config{
		DataDir:   t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		Logger:    log,
	}
	srv, err := Start(cfg)
	require.NoError(t, err)
	srv.Close()
	assert.Empty(t, buf.String())
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
