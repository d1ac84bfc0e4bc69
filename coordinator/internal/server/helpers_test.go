package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server/servertest"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logRecord is one captured log record with its attributes flattened.
type logRecord struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

// logCapture is a slog.Handler that stores every record.
type logCapture struct {
	mu      sync.Mutex
	records []logRecord
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, rec)
	return nil
}

func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

func (c *logCapture) find(message string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.records {
		if r.Message == message {
			out = append(out, r)
		}
	}
	return out
}

func (c *logCapture) errors() []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.records {
		if r.Level >= slog.LevelError {
			out = append(out, r)
		}
	}
	return out
}

// harness is a server over a fake fleet with two hosts: "gpu-1" with four
// GPUs and "gpu-2" with two.
type harness struct {
	t       *testing.T
	fleet   *servertest.Fleet
	logs    *logCapture
	handler http.Handler
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, fleet: servertest.NewFleet(nil), logs: &logCapture{}}
	h.fleet.AddHost(servertest.SampleHost("gpu-1", 4))
	h.fleet.AddHost(servertest.SampleHost("gpu-2", 2))
	h.handler = server.New(server.Config{Fleet: h.fleet, Logger: slog.New(h.logs)})
	return h
}

// requireNoErrorLogs fails when anything was logged at error level, which
// is where 500s and panics are logged: bad input must never get there.
func (h *harness) requireNoErrorLogs() {
	h.t.Helper()
	require.Empty(h.t, h.logs.errors(), "no request may end in a 500 or a panic")
}

// do sends a request straight to the handler. contentType "" sends none.
func (h *harness) do(method, path, contentType, body string) *httptest.ResponseRecorder {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	return rec
}

func (h *harness) postJSON(path, body string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(http.MethodPost, path, "application/json", body)
}

// decodeBody decodes a response body into T, failing on unknown fields so
// that a drift between server and api types shows up.
func decodeBody[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var v T
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v))
	return v
}

// requireAPIError checks status, JSON body, code and that the message
// contains each of wantParts.
func requireAPIError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string, wantParts ...string) {
	t.Helper()
	require.Equal(t, status, rec.Code, "body: %s", rec.Body.String())
	e := decodeBody[api.Error](t, rec)
	require.Equal(t, code, e.Code)
	require.NotEmpty(t, e.Error)
	for _, p := range wantParts {
		require.Contains(t, e.Error, p)
	}
}
