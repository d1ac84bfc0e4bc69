package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastRetry keeps backoff pauses short in tests.
var fastRetry = WithRetry(4, time.Millisecond, 5*time.Millisecond)

// recorded is one request as a test server saw it.
type recorded struct {
	Method, RawPath, Query, ContentType, Auth, UserAgent string
	Body                                                 []byte
}

// stubServer records each request and responds with the next of its
// responses, repeating the last one.
type stubServer struct {
	*httptest.Server
	mu        sync.Mutex
	requests  []recorded
	responses []stubResponse
}

type stubResponse struct {
	status int
	body   string
	header map[string]string
}

func newStub(t *testing.T, responses ...stubResponse) *stubServer {
	s := &stubServer{responses: responses}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *stubServer) serve(w http.ResponseWriter, r *http.Request) {
	body := make([]byte, r.ContentLength)
	if r.ContentLength > 0 {
		_, _ = r.Body.Read(body)
	}
	s.mu.Lock()
	s.requests = append(s.requests, recorded{
		Method: r.Method, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		ContentType: r.Header.Get("Content-Type"), Auth: r.Header.Get("Authorization"),
		UserAgent: r.Header.Get("User-Agent"), Body: body,
	})
	i := min(len(s.requests), len(s.responses)) - 1
	resp := s.responses[i]
	s.mu.Unlock()

	for k, v := range resp.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.status)
	_, _ = w.Write([]byte(resp.body))
}

func (s *stubServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *stubServer) last() recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

func (s *stubServer) client(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(s.URL, append([]Option{WithHTTPClient(s.Client()), fastRetry}, opts...)...)
	require.NoError(t, err)
	return c
}

func errBody(msg, code string) string {
	data, _ := json.Marshal(api.Error{Error: msg, Code: code})
	return string(data)
}

func unavailable() stubResponse {
	return stubResponse{status: 503, body: errBody("etcd is unreachable", api.CodeUnavailable)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestNewValidatesAddress(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://h:1", "http://", "http://h:1/?x=1", "http://h:1/#f", "::"} {
		_, err := New(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "invalid coordinator address")
	}
	c, err := New("http://127.0.0.1:8080/")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8080", c.BaseURL())
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]Option{
		"nil client":      WithHTTPClient(nil),
		"zero timeout":    WithTimeout(0),
		"empty token":     WithBearerToken(""),
		"token with \\n":  WithBearerToken("a\nb"),
		"zero attempts":   WithRetry(0, time.Second, time.Second),
		"max below base":  WithRetry(3, time.Second, time.Millisecond),
		"zero base delay": WithRetry(3, 0, time.Second),
	} {
		_, err := New("http://127.0.0.1:1", opt)
		assert.Error(t, err, name)
	}
}

func TestRequestHeadersAndPaths(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 200, body: `{}`})
	c := s.client(t, WithBearerToken("s3cret"), WithUserAgent("test-agent/1"))

	_, err := c.GetHost(ctx(t), "a/b c")
	require.NoError(t, err)
	got := s.last()
	assert.Equal(t, "GET", got.Method)
	assert.Equal(t, "/v1/hosts/a%2Fb%20c", got.RawPath)
	assert.Equal(t, "Bearer s3cret", got.Auth)
	assert.Equal(t, "test-agent/1", got.UserAgent)
	assert.Empty(t, got.ContentType, "a GET has no body")

	_, _, err = c.Allocate(ctx(t), api.AllocationRequest{GPU: 1, Owner: "alice"})
	require.NoError(t, err)
	got = s.last()
	assert.Equal(t, "/v1/allocations", got.RawPath)
	assert.Equal(t, "application/json", got.ContentType)
	assert.JSONEq(t, `{"cpu":0,"memory":0,"gpu":1,"owner":"alice"}`, string(got.Body))

	_, err = c.ListAllocations(ctx(t), AllocationFilter{HostID: "h1", State: "active"})
	require.NoError(t, err)
	assert.Equal(t, "host=h1&state=active", s.last().Query)

	_, err = c.Drain(ctx(t), "h1")
	require.NoError(t, err)
	assert.Equal(t, "/v1/hosts/h1/drain", s.last().RawPath)
	assert.Equal(t, "POST", s.last().Method)
}

func TestBasePathIsKept(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 200, body: `{"hosts": []}`})
	c, err := New(s.URL+"/coordinator/", WithHTTPClient(s.Client()))
	require.NoError(t, err)
	_, err = c.ListHosts(ctx(t))
	require.NoError(t, err)
	assert.Equal(t, "/coordinator/v1/hosts", s.last().RawPath)
}

func TestEmptyIDRejectedLocally(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 200, body: `{}`})
	c := s.client(t)
	_, err := c.Release(ctx(t), "")
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "allocation ID is empty")
	assert.Zero(t, s.count())
}

func TestAPIErrorMatchesSentinels(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		code   string
		want   error
	}{
		{400, api.CodeInvalid, ErrInvalid},
		{413, api.CodeBodyTooLarge, ErrInvalid},
		{415, api.CodeUnsupportedMediaType, ErrInvalid},
		{404, api.CodeNotFound, ErrNotFound},
		{409, api.CodeNoCapacity, ErrNoCapacity},
		{409, api.CodeConflict, ErrConflict},
		{409, "", ErrConflict},
		{401, api.CodeUnauthorized, ErrUnauthorized},
		{403, "", ErrUnauthorized},
		{503, api.CodeUnavailable, ErrUnavailable},
		{502, "", ErrUnavailable},
	}
	all := []error{ErrInvalid, ErrNotFound, ErrNoCapacity, ErrConflict, ErrUnauthorized, ErrUnavailable}
	for _, tc := range cases {
		e := &APIError{StatusCode: tc.status, Code: tc.code, Message: "m"}
		for _, sentinel := range all {
			assert.Equal(t, sentinel == tc.want, errors.Is(e, sentinel),
				"status %d code %q vs %v", tc.status, tc.code, sentinel)
		}
	}
}

func TestErrorKeepsStatusAndMessage(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 409, body: errBody("no host has 5 GPUs free", api.CodeNoCapacity)})
	c := s.client(t)

	_, _, err := c.Allocate(ctx(t), api.AllocationRequest{GPU: 5})
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 409, apiErr.StatusCode)
	assert.Equal(t, api.CodeNoCapacity, apiErr.Code)
	assert.Equal(t, "no host has 5 GPUs free", apiErr.Message)
	assert.Equal(t, "no host has 5 GPUs free (HTTP 409)", err.Error())
	assert.ErrorIs(t, err, ErrNoCapacity)
	assert.NotErrorIs(t, err, ErrConflict)
}

func TestNonJSONErrorBody(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 502, body: "<html>bad gateway</html>"})
	c := s.client(t, WithRetry(1, time.Millisecond, time.Millisecond))

	_, err := c.ListHosts(ctx(t))
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 502, apiErr.StatusCode)
	assert.Equal(t, "Bad Gateway: <html>bad gateway</html>", apiErr.Message)
	assert.ErrorIs(t, err, ErrUnavailable)
}

func TestRetriesOnlyRetryableCalls(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		call      func(c *Client) error
		wantTries int
	}{
		{"list hosts", func(c *Client) error { _, err := c.ListHosts(ctx(t)); return err }, 4},
		{"get host", func(c *Client) error { _, err := c.GetHost(ctx(t), "h"); return err }, 4},
		{"host health", func(c *Client) error { _, err := c.HostHealth(ctx(t), "h"); return err }, 4},
		{"list allocations", func(c *Client) error {
			_, err := c.ListAllocations(ctx(t), AllocationFilter{})
			return err
		}, 4},
		{"get allocation", func(c *Client) error { _, err := c.GetAllocation(ctx(t), "a"); return err }, 4},
		{"select", func(c *Client) error {
			_, err := c.Select(ctx(t), api.AllocationRequest{GPU: 1})
			return err
		}, 4},
		{"release", func(c *Client) error { _, err := c.Release(ctx(t), "a"); return err }, 4},
		{"renew", func(c *Client) error { _, err := c.Renew(ctx(t), "a"); return err }, 4},
		{"allocate with key", func(c *Client) error {
			_, _, err := c.Allocate(ctx(t), api.AllocationRequest{GPU: 1, IdempotencyKey: "k"})
			return err
		}, 4},
		{"allocate without key", func(c *Client) error {
			_, _, err := c.Allocate(ctx(t), api.AllocationRequest{GPU: 1})
			return err
		}, 1},
		{"drain", func(c *Client) error { _, err := c.Drain(ctx(t), "h"); return err }, 1},
		{"undrain", func(c *Client) error { _, err := c.Undrain(ctx(t), "h"); return err }, 1},
		{"remove host", func(c *Client) error { return c.RemoveHost(ctx(t), "h") }, 1},
		{"ready", func(c *Client) error { return c.Ready(ctx(t)) }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStub(t, unavailable())
			err := tc.call(s.client(t))
			require.ErrorIs(t, err, ErrUnavailable)
			assert.Equal(t, tc.wantTries, s.count())
		})
	}
}

func TestRetrySucceedsAfter503(t *testing.T) {
	t.Parallel()
	s := newStub(t, unavailable(), unavailable(), stubResponse{status: 200, body: `{"hosts": [{"id": "h1"}]}`})
	hosts, err := s.client(t).ListHosts(ctx(t))
	require.NoError(t, err)
	require.Len(t, hosts, 1)
	assert.Equal(t, "h1", hosts[0].ID)
	assert.Equal(t, 3, s.count())
}

func TestNoRetryOnClientErrors(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 404, 409, 500} {
		s := newStub(t, stubResponse{status: status, body: errBody("nope", "")})
		_, err := s.client(t).GetAllocation(ctx(t), "a")
		require.Error(t, err)
		assert.Equal(t, 1, s.count(), "status %d", status)
	}
}

func TestAllocateCreatedFlag(t *testing.T) {
	t.Parallel()
	s := newStub(t,
		stubResponse{status: 201, body: `{"id": "a1"}`},
		stubResponse{status: 200, body: `{"id": "a1"}`})
	c := s.client(t)
	req := api.AllocationRequest{GPU: 1, IdempotencyKey: "k"}

	alloc, created, err := c.Allocate(ctx(t), req)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, "a1", alloc.ID)

	_, created, err = c.Allocate(ctx(t), req)
	require.NoError(t, err)
	assert.False(t, created)
}

// closingListener accepts connections and closes them at once, counting
// them, to produce connection errors without a response.
func closingListener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted = &atomic.Int32{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return "http://" + l.Addr().String(), accepted
}

func TestRetriesConnectionErrors(t *testing.T) {
	t.Parallel()
	addr, accepted := closingListener(t)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	c, err := New(addr, WithHTTPClient(hc), fastRetry)
	require.NoError(t, err)

	_, err = c.ListHosts(ctx(t))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "GET /v1/hosts")
	assert.Equal(t, int32(4), accepted.Load())

	_, _, err = c.Allocate(ctx(t), api.AllocationRequest{GPU: 1})
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Equal(t, int32(5), accepted.Load(), "allocate without a key is sent once")
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "http://" + l.Addr().String()
	require.NoError(t, l.Close())

	c, err := New(addr, fastRetry)
	require.NoError(t, err)
	err = c.Ready(ctx(t))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "connection refused")
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithHTTPClient(srv.Client()), WithTimeout(50*time.Millisecond),
		WithRetry(2, time.Millisecond, time.Millisecond))
	require.NoError(t, err)

	start := time.Now()
	_, err = c.GetAllocation(ctx(t), "a")
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	assert.Equal(t, int32(2), calls.Load())
}

func TestCancelStopsRetries(t *testing.T) {
	t.Parallel()
	s := newStub(t, unavailable())
	c, err := New(s.URL, WithHTTPClient(s.Client()), WithRetry(10, time.Hour, time.Hour))
	require.NoError(t, err)

	cctx, cancel := context.WithCancel(context.Background())
	go func() {
		assert.Eventually(t, func() bool { return s.count() == 1 }, 5*time.Second, time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err = c.ListHosts(cctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrUnavailable)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, 1, s.count())
}

func TestRetryAfterIsHonored(t *testing.T) {
	t.Parallel()
	busy := unavailable()
	busy.header = map[string]string{"Retry-After": "1"}
	s := newStub(t, busy, stubResponse{status: 200, body: `{"hosts": []}`})
	c, err := New(s.URL, WithHTTPClient(s.Client()), WithRetry(2, time.Millisecond, 2*time.Second))
	require.NoError(t, err)

	start := time.Now()
	_, err = c.ListHosts(ctx(t))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), time.Second)
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	p := retryPolicy{maxAttempts: 10, base: 100 * time.Millisecond, max: time.Second}
	for range 200 {
		d1 := p.delay(1, 0)
		assert.GreaterOrEqual(t, d1, 50*time.Millisecond)
		assert.LessOrEqual(t, d1, 100*time.Millisecond)
		d3 := p.delay(3, 0)
		assert.GreaterOrEqual(t, d3, 200*time.Millisecond)
		assert.LessOrEqual(t, d3, 400*time.Millisecond)
		d9 := p.delay(9, 0)
		assert.GreaterOrEqual(t, d9, 500*time.Millisecond)
		assert.LessOrEqual(t, d9, time.Second)
		assert.Equal(t, time.Second, p.delay(1, time.Minute), "Retry-After is capped")
	}
}

func TestKeepAliveNegativeIntervalStillReleases(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 200, body: `{"id": "alloc-1", "state": "released"}`})
	c := s.client(t)

	err := c.KeepAlive(ctx(t), "alloc-1", -time.Second)
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "keepalive interval -1s is negative")
	require.Equal(t, 1, s.count(), "only the release is sent, no renewal")
	got := s.last()
	assert.Equal(t, http.MethodDelete, got.Method)
	assert.Equal(t, "/v1/allocations/alloc-1", got.RawPath)
}

func TestKeepAliveNegativeIntervalKeepsItsError(t *testing.T) {
	t.Parallel()
	s := newStub(t, stubResponse{status: 500, body: errBody("boom", api.CodeInternal)})
	c := s.client(t)

	err := c.KeepAlive(ctx(t), "alloc-1", -time.Second)
	require.ErrorIs(t, err, ErrInvalid, "the invalid interval is the error, not the release's")
	assert.Equal(t, http.MethodDelete, s.last().Method)
}
