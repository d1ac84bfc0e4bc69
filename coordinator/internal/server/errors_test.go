package server_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// badAllocationBodies are request bodies that must be a 400 whose message
// contains the given text.
var badAllocationBodies = []struct {
	name string
	body string
	want string
}{
	{"negative cpu", `{"cpu": -1}`, `field "cpu" is -1; it must not be negative`},
	{"negative memory", `{"memory": -5}`, `"memory" is -5`},
	{"negative gpu", `{"gpu": -2}`, `"gpu" is -2`},
	{"negative min gpu memory", `{"gpu": 1, "min_gpu_memory": -1}`, `"min_gpu_memory"`},
	{"negative ttl", `{"gpu": 1, "ttl_seconds": -60}`, `"ttl_seconds" is -60`},
	{"zero everything", `{}`, "asks for nothing"},
	{"explicit zeros", `{"cpu": 0, "memory": 0, "gpu": 0}`, "asks for nothing"},
	{"cpu 2^63", `{"cpu": 9223372036854775808}`,
		`field "cpu" must be a whole number from 0 to 9223372036854775807, got number 9223372036854775808`},
	{"memory 2^63", `{"memory": 9223372036854775808}`, `field "memory"`},
	{"gpu 2^64", `{"gpu": 18446744073709551616}`, `field "gpu"`},
	{"ttl huge", `{"ttl_seconds": 1e30}`,
		`field "ttl_seconds" must be a whole number of seconds from 0 to 31536000 (one year), got number 1e30`},
	{"ttl fraction", `{"gpu": 1, "ttl_seconds": 1.5}`,
		`field "ttl_seconds" must be a whole number of seconds from 0 to 31536000 (one year), got number 1.5`},
	{"ttl exponent fraction", `{"gpu": 1, "ttl_seconds": 15e-1}`, `got number 15e-1`},
	{"ttl over a year", `{"gpu": 1, "ttl_seconds": 31536001}`,
		`field "ttl_seconds" is 31536001, more than the maximum of 31536000 (one year)`},
	{"ttl over a year in exponent form", `{"gpu": 1, "ttl_seconds": 1e8}`,
		`field "ttl_seconds" is 100000000, more than the maximum of 31536000`},
	{"negative exponent form", `{"gpu": -1e0}`, `field "gpu" is -1; it must not be negative`},
	{"huge exponent", `{"gpu": 1e999999999}`, `field "gpu" must be a whole number`},
	{"exponent beyond int", `{"gpu": 1e99999999999999999999}`, `field "gpu" must be a whole number`},
	{"memory below -2^63", `{"memory": -9223372036854775809}`, `field "memory"`},
	{"cpu string", `{"cpu": "4"}`, `field "cpu" must be a whole number from 0 to 9223372036854775807, got string`},
	{"memory with unit", `{"memory": "16GiB"}`, `field "memory"`},
	{"gpu fraction", `{"gpu": 1.5}`, `field "gpu"`},
	{"cpu bool", `{"cpu": true}`, `field "cpu"`},
	{"cpu object", `{"cpu": {}}`, `field "cpu"`},
	{"owner number", `{"gpu": 1, "owner": 7}`, `field "owner" must be a string`},
	{"labels array", `{"gpu": 1, "labels": ["a"]}`, `field "labels" must be an object`},
	{"label value null", `{"gpu": 1, "labels": {"zone": {}}}`, `field "labels" must map names to strings, got object`},
	{"label value number", `{"gpu": 1, "labels": {"zone": 1}}`, `field "labels" must map names to strings, got number`},
	{"unknown field", `{"gpu": 1, "gpus": 2}`, `unknown field "gpus"; valid fields are cpu, memory, gpu`},
	{"field in wrong case", `{"GPU": 1}`, `unknown field "GPU"`},
	{"repeated field", `{"gpu": 1, "gpu": 2}`, `field "gpu" is given more than once`},
	{"malformed", `{"gpu": 1,}`, "request body is not valid JSON: invalid character '}' looking for beginning of object key string at byte offset 10"},
	{"single quotes", `{'gpu': 1}`, "not valid JSON"},
	{"truncated", `{"gpu": 1`, "not valid JSON: the body ends inside the JSON object at byte offset 9"},
	{"truncated string", `{"owner": "al`, "body ends inside the JSON object"},
	{"trailing data", `{"gpu": 1} x`, "unexpected data after the JSON object"},
	{"two objects", `{"gpu": 1}{"gpu": 2}`, "send exactly one object"},
	{"trailing brace", `{"gpu": 1}}`, "unexpected data after the JSON object"},
	{"array", `[{"gpu": 1}]`, "must be a JSON object, not an array"},
	{"null", `null`, "must be a JSON object, not null"},
	{"number", `4`, "not a number"},
	{"string", `"gpu"`, "not a string"},
	{"blank", "  \n ", "request body is empty"},
	{"byte order mark", "\xef\xbb\xbf{\"gpu\": 1}", "byte order mark"},
	{"invalid UTF-8", "{\"gpu\": 1, \"owner\": \"\xff\"}", "not valid UTF-8"},
	{"xml", "<gpu>1</gpu>", "not valid JSON: invalid character '<' looking for beginning of value at byte offset 1"},
	{"plain text", "not json", `request body is not valid JSON: invalid character 'o' in literal null (expecting 'u') at byte offset 2; send a JSON object such as {"cpu": 4, "gpu": 1}`},
	{"truncated literal", "nul", "not valid JSON: the body ends inside a JSON value at byte offset 3"},
	{"owner too long", `{"gpu": 1, "owner": "` + strings.Repeat("o", 257) + `"}`,
		`field "owner" is 257 bytes long, more than the maximum of 256 bytes`},
	{"unknown strategy", `{"gpu": 1, "strategy": "fastest"}`,
		`unknown strategy "fastest"; use one of least_used, most_free, bin_pack, round_robin, random`},
	{"strategy wrong case", `{"gpu": 1, "strategy": "BIN_PACK"}`, `unknown strategy "BIN_PACK"`},
	{"bad idempotency key", `{"gpu": 1, "idempotency_key": "a/b"}`, "idempotency_key"},
}

func TestAllocationBodyErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, path := range []string{"/v1/allocations", "/v1/select"} {
		for _, tc := range badAllocationBodies {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				rec := h.postJSON(path, tc.body)
				requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, tc.want)
			})
		}
	}
	assert.Zero(t, h.fleet.Calls("Allocate")-countReaching(badAllocationBodies),
		"only syntactically valid bodies may reach the fleet")
	h.requireNoErrorLogs()
}

// countReaching counts the bad bodies that pass decoding, which the fleet
// rejects.
func countReaching(cases []struct{ name, body, want string }) int {
	n := 0
	for _, tc := range cases {
		if strings.Contains(tc.want, "asks for nothing") || tc.name == "bad idempotency key" {
			n++
		}
	}
	return n
}

func TestWholeNumbersInExponentForm(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body string
		want api.AllocationRequest
	}{
		{`{"gpu": 1, "ttl_seconds": 1e3}`, api.AllocationRequest{GPU: 1, TTLSeconds: 1000}},
		{`{"gpu": 1, "ttl_seconds": 1E+3}`, api.AllocationRequest{GPU: 1, TTLSeconds: 1000}},
		{`{"gpu": 1, "ttl_seconds": 60.0}`, api.AllocationRequest{GPU: 1, TTLSeconds: 60}},
		{`{"gpu": 1, "ttl_seconds": 0.6e2}`, api.AllocationRequest{GPU: 1, TTLSeconds: 60}},
		{`{"gpu": 1, "ttl_seconds": 31536e3}`, api.AllocationRequest{GPU: 1, TTLSeconds: 31536000}},
		{`{"gpu": 2e0, "memory": 1.6e10}`, api.AllocationRequest{GPU: 2, Memory: 16e9}},
		{`{"cpu": 0e99999999999, "gpu": 1}`, api.AllocationRequest{GPU: 1}},
		{`{"memory": 9.223372036854775807e18}`, api.AllocationRequest{Memory: math.MaxInt64}},
		{`{"gpu": 1, "owner": "1e3"}`, api.AllocationRequest{GPU: 1, Owner: "1e3"}},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			got, err := server.DecodeAllocationRequest(strings.NewReader(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	// Beyond int64 stays an error that shows the number as sent.
	_, err := server.DecodeAllocationRequest(strings.NewReader(`{"memory": 9.3e18}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `field "memory" must be a whole number from 0 to `+
		`9223372036854775807, got number 9.3e18`)
}

func TestEmptyAllocationBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	rec := h.do(http.MethodPost, "/v1/allocations", "", "")
	requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, "request body is empty")

	rec = h.do(http.MethodPost, "/v1/allocations", "application/json", "")
	requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, "request body is empty")
	h.requireNoErrorLogs()
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	big := `{"owner": "` + strings.Repeat("a", api.MaxBodyBytes) + `", "gpu": 1}`

	// With a Content-Length the server rejects before reading.
	rec := h.postJSON("/v1/allocations", big)
	requireAPIError(t, rec, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "1048576 bytes")

	// Without one (chunked), the limit hits while reading.
	req := httptest.NewRequest(http.MethodPost, "/v1/allocations", strings.NewReader(big))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	rec = httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	requireAPIError(t, rec, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)

	// Trailing space that pushes a valid body over the limit counts too.
	padded := `{"gpu": 1}` + strings.Repeat(" ", api.MaxBodyBytes)
	rec = h.postJSON("/v1/select", padded)
	requireAPIError(t, rec, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)

	rec = h.postJSON("/v1/allocations/alloc-1/renew", padded)
	requireAPIError(t, rec, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)

	// Exactly at the limit is accepted.
	exact := `{"gpu": 1}` + strings.Repeat(" ", api.MaxBodyBytes-len(`{"gpu": 1}`))
	rec = h.postJSON("/v1/select", exact)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	assert.Zero(t, h.fleet.Calls("Allocate"))
	h.requireNoErrorLogs()
}

func TestBodyTooLargeOverTCP(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := httptest.NewServer(h.handler)
	defer srv.Close()

	// An io.Reader without a known length makes the client send chunks.
	body := io.MultiReader(strings.NewReader(`{"owner": "`),
		strings.NewReader(strings.Repeat("a", 2*api.MaxBodyBytes)))
	resp, err := http.Post(srv.URL+"/v1/allocations", "application/json", body)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	h.requireNoErrorLogs()
}

func TestWrongContentType(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		path, contentType, body string
	}{
		{"/v1/allocations", "", `{"gpu": 1}`},
		{"/v1/allocations", "text/plain", `{"gpu": 1}`},
		{"/v1/allocations", "application/x-www-form-urlencoded", `gpu=1`},
		{"/v1/allocations", "application/json; charset=latin1", `{"gpu": 1}`},
		{"/v1/allocations", "application/json;;", `{"gpu": 1}`},
		{"/v1/select", "application/xml", `<gpu>1</gpu>`},
		{"/v1/hosts/gpu-1/drain", "text/plain", `please`},
		{"/v1/hosts/gpu-1/undrain", "", `{}`},
		{"/v1/allocations/alloc-1/renew", "text/plain", `{}`},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+tc.contentType, func(t *testing.T) {
			rec := h.do(http.MethodPost, tc.path, tc.contentType, tc.body)
			requireAPIError(t, rec, http.StatusUnsupportedMediaType,
				api.CodeUnsupportedMediaType, "application/json")
		})
	}

	ok := []string{"application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"}
	for _, ct := range ok {
		rec := h.do(http.MethodPost, "/v1/select", ct, `{"gpu": 1}`)
		assert.Equal(t, http.StatusOK, rec.Code, "Content-Type %q", ct)
	}
	h.requireNoErrorLogs()
}

func TestParameterlessPostBodies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	require.Equal(t, http.StatusCreated, h.postJSON("/v1/allocations", `{"gpu": 1}`).Code)

	for _, path := range []string{"/v1/hosts/gpu-1/drain", "/v1/hosts/gpu-1/undrain", "/v1/allocations/alloc-1/renew"} {
		assert.Equal(t, http.StatusOK, h.do(http.MethodPost, path, "", "").Code, path)
		assert.Equal(t, http.StatusOK, h.postJSON(path, "{}").Code, path)
		assert.Equal(t, http.StatusOK, h.postJSON(path, " \n").Code, path)

		rec := h.postJSON(path, `{"force": true}`)
		requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid,
			`unknown field "force"; this endpoint takes no fields`)
		rec = h.postJSON(path, `[]`)
		requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, "JSON object")
		rec = h.postJSON(path, `{}{}`)
		requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, "unexpected data")
	}
	h.requireNoErrorLogs()
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		method, path, want string
	}{
		{http.MethodGet, "/v1/hosts/gpu-9", `"gpu-9"`},
		{http.MethodGet, "/v1/hosts/gpu-9/health", `"gpu-9"`},
		{http.MethodPost, "/v1/hosts/gpu-9/drain", `"gpu-9"`},
		{http.MethodPost, "/v1/hosts/gpu-9/undrain", `"gpu-9"`},
		{http.MethodDelete, "/v1/hosts/gpu-9", `"gpu-9"`},
		{http.MethodGet, "/v1/allocations/alloc-9", `"alloc-9"`},
		{http.MethodDelete, "/v1/allocations/alloc-9", `"alloc-9"`},
		{http.MethodPost, "/v1/allocations/alloc-9/renew", `"alloc-9"`},
		{http.MethodGet, "/", `no route matches GET "/"`},
		{http.MethodGet, "/v2/hosts", `no route matches GET "/v2/hosts"`},
		{http.MethodGet, "/v1", `no route matches GET "/v1"`},
		{http.MethodGet, "/v1/", `no route matches GET "/v1/"`},
		{http.MethodGet, "/v1/hosts/", `no route matches GET "/v1/hosts/"`},
		{http.MethodGet, "/v1/hosts/gpu-1/gpus", `no route matches`},
		{http.MethodPost, "/v1/nothing", `no route matches POST "/v1/nothing"`},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := h.do(tc.method, tc.path, "", "")
			requireAPIError(t, rec, http.StatusNotFound, api.CodeNotFound, tc.want)
		})
	}
	h.requireNoErrorLogs()
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		method, path, allow string
	}{
		{http.MethodPut, "/v1/hosts", "GET, HEAD"},
		{http.MethodPost, "/v1/hosts", "GET, HEAD"},
		{http.MethodPatch, "/v1/hosts/gpu-1", "DELETE, GET, HEAD"},
		{http.MethodGet, "/v1/hosts/gpu-1/drain", "POST"},
		{http.MethodGet, "/v1/select", "POST"},
		{http.MethodPut, "/v1/allocations", "GET, HEAD, POST"},
		{http.MethodPost, "/v1/allocations/alloc-1", "DELETE, GET, HEAD"},
		{http.MethodDelete, "/v1/allocations/alloc-1/renew", "POST"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodDelete, "/readyz", "GET, HEAD"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := h.do(tc.method, tc.path, "", "")
			requireAPIError(t, rec, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed,
				fmt.Sprintf("method %s is not allowed on %s", tc.method, tc.path), tc.allow)
			assert.Equal(t, tc.allow, rec.Header().Get("Allow"))
		})
	}
	h.requireNoErrorLogs()
}

func TestInvalidPathIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		method, path, want string
	}{
		{http.MethodGet, "/v1/hosts/a%2Fb", `host ID in path: ID "a/b" contains '/'`},
		{http.MethodGet, "/v1/hosts/.hidden", "must not start with '.'"},
		{http.MethodGet, "/v1/hosts/" + long(129), "maximum of 128"},
		{http.MethodPost, "/v1/hosts/a%20b/drain", `host ID in path: ID "a b" contains ' '`},
		{http.MethodGet, "/v1/allocations/%00", "allocation ID in path"},
		{http.MethodDelete, "/v1/allocations/a%2Fb", "allocation ID in path"},
		{http.MethodPost, "/v1/allocations/%C3%A9/renew", "allocation ID in path"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := h.do(tc.method, tc.path, "", "")
			requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, tc.want)
		})
	}
	assert.Zero(t, h.fleet.Calls("GetHost"))
	assert.Zero(t, h.fleet.Calls("Release"))
	h.requireNoErrorLogs()
}

func TestNoCapacityIs409(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := h.postJSON("/v1/allocations", `{"gpu": 5}`)
	requireAPIError(t, rec, http.StatusConflict, api.CodeNoCapacity, "no host has")

	rec = h.postJSON("/v1/select", `{"cpu": 1, "labels": {"zone": "mars"}}`)
	requireAPIError(t, rec, http.StatusConflict, api.CodeNoCapacity)
	h.requireNoErrorLogs()
}

func TestNotFoundListsRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := h.do(http.MethodGet, "/v1/", "", "")
	requireAPIError(t, rec, http.StatusNotFound, api.CodeNotFound,
		`no route matches GET "/v1/"; the API's routes are GET /healthz, GET /readyz, `+
			"GET /v1/allocations, POST /v1/allocations, DELETE /v1/allocations/{id}, ")
	assert.NotContains(t, rec.Body.String(), "lives under /v1")
}

func TestUncleanPathsAre404(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		method, path, want string
	}{
		{http.MethodGet, "/v1//hosts", `path "/v1//hosts" is not in canonical form`},
		{http.MethodGet, "/v1/./hosts", `request "/v1/hosts" instead`},
		{http.MethodGet, "/v1/hosts/../hosts", `request "/v1/hosts" instead`},
		{http.MethodGet, "/v1/hosts/%2e%2e", `path "/v1/hosts/.." is not in canonical form`},
		{http.MethodGet, "/v1/hosts/%2E", `path "/v1/hosts/." is not in canonical form`},
		{http.MethodGet, "/v1/%2e%2e/x", `path "/v1/../x" is not in canonical form`},
		{http.MethodDelete, "/v1/hosts/%2e%2e", `path "/v1/hosts/.."`},
		{http.MethodDelete, "/v1/allocations/%2e%2e", `path "/v1/allocations/.."`},
		{http.MethodPost, "/v1/hosts/gpu-1/../gpu-2/drain", `request "/v1/hosts/gpu-2/drain" instead`},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := h.do(tc.method, tc.path, "", "")
			requireAPIError(t, rec, http.StatusNotFound, api.CodeNotFound,
				tc.want, "the API's routes are ")
			assert.Empty(t, rec.Header().Get("Location"))
		})
	}
	assert.Zero(t, h.fleet.Calls("RemoveHost"), "no handler may run for an unclean path")
	assert.Zero(t, h.fleet.Calls("Release"))
	assert.Zero(t, h.fleet.Calls("Drain"))
	h.requireNoErrorLogs()
}

func TestUncleanPathWithoutRouteHasNoHint(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := h.do(http.MethodGet, "/v1/hosts/%2e%2e", "", "")
	requireAPIError(t, rec, http.StatusNotFound, api.CodeNotFound)
	assert.NotContains(t, rec.Body.String(), "instead", "the cleaned path /v1 matches no route")
}

func TestQueryParametersRejected(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		path, want string
	}{
		{"/v1/hosts?foo=1", `unknown query parameter "foo"; /v1/hosts takes no query parameters`},
		{"/v1/hosts?state=healthy&a=b", `unknown query parameter "a"`},
		{"/v1/hosts?x", `unknown query parameter "x"`},
		{"/v1/hosts?a=%zz", `invalid query part "a=%zz": invalid URL escape "%zz"; ` +
			`/v1/hosts takes no query parameters`},
		{"/v1/hosts?a;b", `invalid query part "a;b": invalid semicolon separator`},
		{"/v1/hosts/gpu-1?verbose=1", `unknown query parameter "verbose"; /v1/hosts/gpu-1 takes no`},
		{"/v1/hosts/gpu-1/health?x=1", `unknown query parameter "x"`},
		{"/v1/allocations/alloc-1?x=1", `unknown query parameter "x"`},
		{"/v1/allocations?colour=red", `unknown query parameter "colour"; use host, owner or state`},
		{"/v1/allocations?owner=" + strings.Repeat("o", 257),
			"query parameter owner is 257 bytes long, more than the maximum of 256 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			rec := h.do(http.MethodGet, tc.path, "", "")
			requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, tc.want)
		})
	}
	assert.Zero(t, h.fleet.Calls("ListHosts"), "a rejected query must not reach the fleet")

	// Endpoints that change state take no query either, so that an
	// option such as ?force=1 does not silently go unused.
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodPost, "/v1/allocations?dry_run=1", `unknown query parameter "dry_run"`},
		{http.MethodPost, "/v1/select?x=%zz", `invalid query part "x=%zz"`},
		{http.MethodDelete, "/v1/allocations/alloc-1?force=1", `unknown query parameter "force"`},
		{http.MethodPost, "/v1/allocations/alloc-1/renew?ttl=60", `unknown query parameter "ttl"`},
		{http.MethodPost, "/v1/hosts/gpu-1/drain?now;x", `invalid query part "now;x"`},
		{http.MethodPost, "/v1/hosts/gpu-1/undrain?x=1", `unknown query parameter "x"`},
		{http.MethodDelete, "/v1/hosts/gpu-1?force=1", `unknown query parameter "force"`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := h.do(tc.method, tc.path, "application/json", `{"gpu": 1}`)
			requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid, tc.want)
		})
	}
	for _, method := range []string{"Allocate", "Select", "Release", "Renew", "Drain",
		"Undrain", "RemoveHost"} {
		assert.Zero(t, h.fleet.Calls(method), "a rejected query must not reach %s", method)
	}

	rec := h.do(http.MethodGet, "/v1/hosts?", "", "")
	assert.Equal(t, http.StatusOK, rec.Code, "an empty query is no parameter")
	rec = h.do(http.MethodGet, "/v1/allocations?owner="+strings.Repeat("o", 256), "", "")
	assert.Equal(t, http.StatusOK, rec.Code, "an owner of exactly 256 bytes is allowed")
	h.requireNoErrorLogs()
}

func TestEmptyBodyEndpointRejectsText(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := h.postJSON("/v1/hosts/gpu-1/drain", "not json")
	requireAPIError(t, rec, http.StatusBadRequest, api.CodeInvalid,
		"request body is not valid JSON", "at byte offset 2", "send no body, or {}")
	assert.Zero(t, h.fleet.Calls("Drain"))
}
