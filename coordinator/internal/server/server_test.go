package server_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server/servertest"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestHostEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	list := decodeBody[api.HostList](t, h.do(http.MethodGet, "/v1/hosts", "", ""))
	require.Len(t, list.Hosts, 2)
	assert.Equal(t, "gpu-1", list.Hosts[0].ID)
	assert.Equal(t, "gpu-2", list.Hosts[1].ID)

	rec := h.do(http.MethodGet, "/v1/hosts/gpu-1", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	host := decodeBody[api.Host](t, rec)
	assert.Equal(t, 4, host.TotalGPU)
	assert.Len(t, host.GPUs, 4)

	rec = h.do(http.MethodGet, "/v1/hosts/gpu-2/health", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	health := decodeBody[api.HostHealth](t, rec)
	assert.Equal(t, "gpu-2", health.HostID)
	assert.Equal(t, api.HealthHealthy, health.Health)

	rec = h.do(http.MethodPost, "/v1/hosts/gpu-1/drain", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "draining", decodeBody[api.Host](t, rec).Status)

	rec = h.postJSON("/v1/hosts/gpu-1/undrain", "{}")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "active", decodeBody[api.Host](t, rec).Status)

	h.requireNoErrorLogs()
}

func TestRemoveHost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	rec := h.do(http.MethodDelete, "/v1/hosts/gpu-2", "", "")
	requireAPIError(t, rec, http.StatusConflict, api.CodeConflict, "gpu-2", "healthy")

	stopped := servertest.SampleHost("gpu-3", 0)
	stopped.Health = api.HealthUnhealthy
	h.fleet.AddHost(stopped)
	rec = h.do(http.MethodDelete, "/v1/hosts/gpu-3", "", "")
	require.Equal(t, http.StatusNoContent, rec.Code)
	assert.Empty(t, rec.Body.String())

	rec = h.do(http.MethodGet, "/v1/hosts/gpu-3", "", "")
	requireAPIError(t, rec, http.StatusNotFound, api.CodeNotFound, "gpu-3")
	h.requireNoErrorLogs()
}

func TestAllocationLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	rec := h.postJSON("/v1/select", `{"cpu": 2, "memory": 1073741824, "gpu": 1}`)
	require.Equal(t, http.StatusOK, rec.Code)
	sel := decodeBody[api.Selection](t, rec)
	assert.Equal(t, "gpu-1", sel.Host.ID)
	require.Len(t, sel.GPUs, 1)
	assert.Equal(t, 0, h.fleet.Calls("Allocate"), "select must not allocate")

	body := `{"cpu": 2, "memory": 1073741824, "gpu": 2, "gpu_model": "a100",
		"labels": {}, "strategy": "bin_pack", "owner": "alice", "ttl_seconds": 60}`
	rec = h.postJSON("/v1/allocations", body)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	alloc := decodeBody[api.Allocation](t, rec)
	assert.Equal(t, "/v1/allocations/"+alloc.ID, rec.Header().Get("Location"))
	assert.Equal(t, "GPU-gpu-1-0,GPU-gpu-1-1", alloc.CUDAVisibleDevices)
	assert.Equal(t, "active", alloc.State)
	require.NotNil(t, alloc.ExpiresAt)

	rec = h.do(http.MethodGet, "/v1/allocations/"+alloc.ID, "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, alloc.ID, decodeBody[api.Allocation](t, rec).ID)

	rec = h.do(http.MethodPost, "/v1/allocations/"+alloc.ID+"/renew", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, 1, h.fleet.Calls("Renew"))

	rec = h.do(http.MethodDelete, "/v1/allocations/"+alloc.ID, "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	released := decodeBody[api.Allocation](t, rec)
	assert.Equal(t, "released", released.State)
	assert.False(t, released.AlreadyReleased)

	rec = h.do(http.MethodDelete, "/v1/allocations/"+alloc.ID, "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.True(t, decodeBody[api.Allocation](t, rec).AlreadyReleased)

	rec = h.do(http.MethodPost, "/v1/allocations/"+alloc.ID+"/renew", "", "")
	requireAPIError(t, rec, http.StatusConflict, api.CodeConflict, alloc.ID)
	h.requireNoErrorLogs()
}

func TestAllocateIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	body := `{"gpu": 1, "idempotency_key": "job-42"}`

	first := h.postJSON("/v1/allocations", body)
	require.Equal(t, http.StatusCreated, first.Code)
	second := h.postJSON("/v1/allocations", body)
	require.Equal(t, http.StatusOK, second.Code)

	a := decodeBody[api.Allocation](t, first)
	b := decodeBody[api.Allocation](t, second)
	assert.Equal(t, a.ID, b.ID)
	assert.Equal(t, "/v1/allocations/"+a.ID, second.Header().Get("Location"))
}

func TestListAllocationsFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, body := range []string{
		`{"gpu": 4, "owner": "alice"}`,
		`{"gpu": 2, "owner": "bob"}`,
		`{"cpu": 1, "owner": "bob"}`,
	} {
		require.Equal(t, http.StatusCreated, h.postJSON("/v1/allocations", body).Code)
	}
	require.Equal(t, http.StatusOK, h.do(http.MethodDelete, "/v1/allocations/alloc-3", "", "").Code)

	cases := []struct {
		query string
		want  []string
	}{
		{"", []string{"alloc-1", "alloc-2", "alloc-3"}},
		{"?host=gpu-2", []string{"alloc-2"}},
		{"?owner=bob", []string{"alloc-2", "alloc-3"}},
		{"?owner=bob&state=active", []string{"alloc-2"}},
		{"?state=released", []string{"alloc-3"}},
		{"?state=lost", []string{}},
		{"?host=gpu-9", []string{}},
	}
	for _, tc := range cases {
		t.Run("query "+tc.query, func(t *testing.T) {
			rec := h.do(http.MethodGet, "/v1/allocations"+tc.query, "", "")
			require.Equal(t, http.StatusOK, rec.Code)
			require.Contains(t, rec.Body.String(), `"allocations":[`, "an empty list is [] not null")
			list := decodeBody[api.AllocationList](t, rec)
			got := []string{}
			for _, a := range list.Allocations {
				got = append(got, a.ID)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestListAllocationsBadQuery(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := map[string]string{
		"?state=stopped":        `"stopped"; use one of active, lost, expired, released`,
		"?status=active":        `unknown query parameter "status"`,
		"?owner=a&owner=b":      `"owner" is given 2 times`,
		"?host=a%2Fb":           "query parameter host",
		"?host=" + long(200):    "maximum of 128",
		"?state=ACTIVE":         `"ACTIVE"`,
		"?host=&state=released": `query parameter "host" is empty; give a value, or omit it to list all`,
		"?owner=":               `query parameter "owner" is empty`,
		"?state=":               `query parameter "state" is empty`,
		"?state":                `query parameter "state" is empty`,

		// A query that url.ParseQuery rejects must not shrink to the
		// parts that parse, which would list everything.
		"?state=active;x": `invalid query part "state=active;x": invalid semicolon separator ` +
			`in query; separate parameters with & and percent-encode`,
		"?state=released;owner=me": `invalid query part "state=released;owner=me"`,
		"?state=%zz":               `invalid query part "state=%zz": invalid URL escape "%zz"`,
		"?owner=me&state=lost;x=1": `invalid query part "state=lost;x=1"`,
		"?owner=100%&state=active": `invalid query part "owner=100%"`,
		"?state=active&colour=%zz": `(; as %3B, % as %25, & as %26)`,
	}
	for query, want := range cases {
		t.Run(query, func(t *testing.T) {
			rec := h.do(http.MethodGet, "/v1/allocations"+query, "", "")
			requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, want)
		})
	}
	assert.Zero(t, h.fleet.Calls("ListAllocations"), "a rejected query must not reach the fleet")
	h.requireNoErrorLogs()
}

func TestListAllocationsEncodedSemicolon(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	require.Equal(t, http.StatusCreated,
		h.postJSON("/v1/allocations", `{"gpu": 1, "owner": "a;b"}`).Code)
	require.Equal(t, http.StatusCreated,
		h.postJSON("/v1/allocations", `{"gpu": 1, "owner": "a"}`).Code)

	rec := h.do(http.MethodGet, "/v1/allocations?owner=a%3Bb", "", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	list := decodeBody[api.AllocationList](t, rec)
	require.Len(t, list.Allocations, 1)
	assert.Equal(t, "a;b", list.Allocations[0].Owner)
}

func TestRenewWithoutTTLSaysWhatToDo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := h.postJSON("/v1/allocations", `{"gpu": 1}`)
	require.Equal(t, http.StatusCreated, rec.Code)
	alloc := decodeBody[api.Allocation](t, rec)

	// The fake fleet renews anything, so the real fleet's error is
	// injected; the server must pass it on whole as a 400.
	h.fleet.FailNext("Renew", fmt.Errorf("%w: allocation %q has no TTL; it "+
		"lives until released, so there is nothing to renew. To get an "+
		"allocation that expires, request a new one with ttl_seconds",
		service.ErrInvalid, alloc.ID))
	rec = h.do(http.MethodPost, "/v1/allocations/"+alloc.ID+"/renew", "", "")
	requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid,
		fmt.Sprintf("allocation %q has no TTL", alloc.ID),
		"it lives until released",
		"request a new one with ttl_seconds")
}

func TestRenewOtherInvalidUnchanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := h.postJSON("/v1/allocations", `{"gpu": 1, "ttl_seconds": 60}`)
	require.Equal(t, http.StatusCreated, rec.Code)
	alloc := decodeBody[api.Allocation](t, rec)

	h.fleet.FailNext("Renew", fmt.Errorf("%w: something else", service.ErrInvalid))
	rec = h.do(http.MethodPost, "/v1/allocations/"+alloc.ID+"/renew", "", "")
	requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, "something else")
	assert.NotContains(t, rec.Body.String(), "lives until released",
		"an allocation with a TTL gets no advice about TTLs")
}

func long(n int) string { return strings.Repeat("x", n) }

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	rec := h.do(http.MethodGet, "/healthz", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"status":"ok"}`, rec.Body.String())

	h.fleet.SetReady(false)
	rec = h.do(http.MethodGet, "/readyz", "", "")
	requireAPIError(t, rec, http.StatusServiceUnavailable, api.CodeUnavailable, "not ready")

	h.fleet.SetReady(true)
	rec = h.do(http.MethodGet, "/readyz", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"status":"ready"}`, rec.Body.String())

	// A liveness probe must not depend on the fleet.
	h.fleet.SetReady(false)
	assert.Equal(t, http.StatusOK, h.do(http.MethodGet, "/healthz", "", "").Code)
}

func TestFleetErrorsMapToStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{service.ErrInvalid, http.StatusBadRequest, api.CodeInvalid},
		{service.ErrNotFound, http.StatusNotFound, api.CodeNotFound},
		{service.ErrNoCapacity, http.StatusConflict, api.CodeNoCapacity},
		{service.ErrConflict, http.StatusConflict, api.CodeConflict},
		{service.ErrUnavailable, http.StatusServiceUnavailable, api.CodeUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			err := errors.Join(errors.New("etcd said something specific"), tc.err)
			h.fleet.FailNext("Allocate", err)
			rec := h.postJSON("/v1/allocations", `{"gpu": 1}`)
			requireAPIError(t, rec, tc.status, tc.code, "etcd said something specific")
			h.requireNoErrorLogs()
		})
	}
}

func TestUnexpectedFleetErrorIs500(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fleet.FailNext("ListHosts", errors.New("secret internal detail"))

	rec := h.do(http.MethodGet, "/v1/hosts", "", "")
	requireAPIError(t, rec, http.StatusInternalServerError, api.CodeInternal, "see the coordinator log")
	assert.NotContains(t, rec.Body.String(), "secret internal detail")

	logged := h.logs.errors()
	require.Len(t, logged, 1)
	assert.Equal(t, "secret internal detail", logged[0].Attrs["error"])
}

func TestErrorLogNamesIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	requireAPIError(t, h.do(http.MethodGet, "/v1/allocations/alloc-77", "", ""),
		http.StatusNotFound, api.CodeNotFound, "alloc-77")
	requireAPIError(t, h.do(http.MethodPost, "/v1/hosts/nope/drain", "", ""),
		http.StatusNotFound, api.CodeNotFound, "nope")

	failed := h.logs.find("request failed")
	require.Len(t, failed, 2)
	assert.Equal(t, slog.LevelWarn, failed[0].Level)
	assert.Equal(t, "alloc-77", failed[0].Attrs["alloc_id"])
	assert.Equal(t, "404", failed[0].Attrs["status"])
	assert.Equal(t, "nope", failed[1].Attrs["host_id"])
}

func TestRequestLogAtDebug(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.do(http.MethodGet, "/v1/hosts/gpu-1", "", "")
	h.do(http.MethodGet, "/nowhere", "", "")

	logged := h.logs.find("http request")
	require.Len(t, logged, 2)
	assert.Equal(t, slog.LevelDebug, logged[0].Level)
	assert.Equal(t, "GET", logged[0].Attrs["method"])
	assert.Equal(t, "/v1/hosts/gpu-1", logged[0].Attrs["path"])
	assert.Equal(t, "200", logged[0].Attrs["status"])
	assert.NotEmpty(t, logged[0].Attrs["duration"])
	assert.Equal(t, "404", logged[1].Attrs["status"])
}

func TestPanicBecomesLogged500(t *testing.T) {
	t.Parallel()
	logs := &logCapture{}
	handler := server.New(server.Config{
		Fleet:  servertest.NewFleet(nil),
		Logger: slog.New(logs),
		Extra: map[string]http.Handler{
			"GET /boom": http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				panic("boom")
			}),
		},
	})

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	requireAPIError(t, rec, http.StatusInternalServerError, api.CodeInternal)

	panics := logs.find("panic in HTTP handler")
	require.Len(t, panics, 1)
	assert.Equal(t, "boom", panics[0].Attrs["panic"])
	assert.Contains(t, panics[0].Attrs["stack"], "goroutine")
	assert.Equal(t, "500", logs.find("http request")[0].Attrs["status"])
}

func TestConfigHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var patterns []string
	blocked := 0
	handler := server.New(server.Config{
		Fleet:  servertest.NewFleet(nil),
		Logger: slog.New(slog.DiscardHandler),
		WrapMutating: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				blocked++
				mu.Unlock()
				w.WriteHeader(http.StatusUnauthorized)
			})
		},
		WrapRoute: func(pattern string, next http.Handler) http.Handler {
			mu.Lock()
			patterns = append(patterns, pattern)
			mu.Unlock()
			return next
		},
		Extra: map[string]http.Handler{
			"GET /metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("metrics"))
			}),
		},
	})
	serve := func(method, path string) int {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code
	}

	assert.Equal(t, http.StatusUnauthorized, serve(http.MethodPost, "/v1/allocations"))
	assert.Equal(t, http.StatusUnauthorized, serve(http.MethodDelete, "/v1/allocations/a"))
	assert.Equal(t, http.StatusUnauthorized, serve(http.MethodPost, "/v1/hosts/h/drain"))
	assert.Equal(t, http.StatusOK, serve(http.MethodGet, "/v1/hosts"))
	assert.Equal(t, http.StatusBadRequest, serve(http.MethodPost, "/v1/select"),
		"select is a dry run and not wrapped as mutating")
	assert.Equal(t, http.StatusOK, serve(http.MethodGet, "/metrics"))
	assert.Equal(t, 3, blocked)

	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, patterns, 15)
	assert.True(t, slices.Contains(patterns, "GET /metrics"))
	assert.True(t, slices.Contains(patterns, "POST /v1/allocations/{id}/renew"))
}
