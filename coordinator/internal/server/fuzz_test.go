package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server/servertest"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// FuzzDecodeAllocationRequest checks that the decoder never panics, that
// every error is a 400 or 413 kind with a message, and that whatever it
// accepts is in range and survives a JSON round trip unchanged. The corpus
// under testdata/fuzz runs as regression cases in every plain go test.
func FuzzDecodeAllocationRequest(f *testing.F) {
	for _, tc := range badAllocationBodies {
		f.Add([]byte(tc.body))
	}
	f.Add([]byte(`{"cpu": 4, "memory": 17179869184, "gpu": 1, "labels": {"zone": "a"}}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := server.DecodeAllocationRequest(bytes.NewReader(body))
		if err != nil {
			require.True(t, errors.Is(err, service.ErrInvalid) || errors.Is(err, server.ErrBodyTooLarge),
				"error %v wraps no sentinel", err)
			require.NotEmpty(t, err.Error())
			return
		}

		require.GreaterOrEqual(t, req.CPU, 0)
		require.GreaterOrEqual(t, req.Memory, int64(0))
		require.GreaterOrEqual(t, req.GPU, 0)
		require.GreaterOrEqual(t, req.MinGPUMemory, int64(0))
		require.GreaterOrEqual(t, req.TTLSeconds, int64(0))
		require.True(t, req.Strategy == "" || slices.Contains(api.Strategies, req.Strategy))

		encoded, err := json.Marshal(req)
		require.NoError(t, err)
		again, err := server.DecodeAllocationRequest(bytes.NewReader(encoded))
		require.NoError(t, err, "re-encoded %s", encoded)
		require.Equal(t, normalizeLabels(req), normalizeLabels(again))
	})
}

// normalizeLabels treats an empty label map like a missing one, since
// omitempty drops it on encoding.
func normalizeLabels(r api.AllocationRequest) api.AllocationRequest {
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r
}

// FuzzAllocateHandler sends arbitrary bodies through the whole handler and
// checks that none gets a 5xx or reaches the panic handler.
func FuzzAllocateHandler(f *testing.F) {
	for _, tc := range badAllocationBodies {
		f.Add([]byte(tc.body), "application/json")
	}
	f.Add([]byte(`{"gpu": 1}`), "text/plain")
	f.Add([]byte(`{"gpu": 1, "idempotency_key": "k"}`), "application/json; charset=utf-8")

	logs := &logCapture{}
	fleet := servertest.NewFleet(nil)
	fleet.AddHost(servertest.SampleHost("gpu-1", 8))
	handler := server.New(server.Config{Fleet: fleet, Logger: slog.New(logs)})

	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		for _, path := range []string{"/v1/allocations", "/v1/select", "/v1/hosts/gpu-1/drain"} {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)

			require.Less(t, rec.Code, 500, "body %q: %s", body, rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			require.True(t, json.Valid(rec.Body.Bytes()))
		}
		require.Empty(t, logs.errors())
	})
}
