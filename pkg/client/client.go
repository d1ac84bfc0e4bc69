package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of the options.
const (
	// DefaultTimeout bounds one HTTP attempt.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxAttempts is the number of tries of a retryable call.
	DefaultMaxAttempts = 4
	// DefaultRetryBaseDelay is the backoff before the second attempt; it
	// doubles with each further attempt, up to DefaultRetryMaxDelay.
	DefaultRetryBaseDelay = 200 * time.Millisecond
	// DefaultRetryMaxDelay caps one backoff pause.
	DefaultRetryMaxDelay = 3 * time.Second
)

// maxResponseBytes bounds a response body read into memory.
const maxResponseBytes = 64 << 20

// Client calls one coordinator. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client
	token     string
	timeout   time.Duration
	retry     retryPolicy
	userAgent string
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sends requests through hc, for example one with a custom
// TLS configuration. Its own Timeout still applies on top of WithTimeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("WithHTTPClient: client is nil")
		}
		c.http = hc
		return nil
	}
}

// WithTimeout bounds each HTTP attempt; a retried call may take up to
// about attempts × timeout plus the backoff pauses.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("WithTimeout: timeout %s must be positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithBearerToken sends "Authorization: Bearer <token>" with every
// request.
func WithBearerToken(token string) Option {
	return func(c *Client) error {
		if token == "" || strings.ContainsAny(token, " \r\n") {
			return errors.New("WithBearerToken: token must be non-empty " +
				"and contain no spaces or line breaks")
		}
		c.token = token
		return nil
	}
}

// WithRetry sets the number of attempts of a retryable call (1 disables
// retries) and the backoff bounds.
func WithRetry(maxAttempts int, baseDelay, maxDelay time.Duration) Option {
	return func(c *Client) error {
		if maxAttempts < 1 || baseDelay <= 0 || maxDelay < baseDelay {
			return fmt.Errorf("WithRetry: need maxAttempts >= 1 (got %d) "+
				"and 0 < baseDelay (%s) <= maxDelay (%s)", maxAttempts, baseDelay, maxDelay)
		}
		c.retry = retryPolicy{maxAttempts: maxAttempts, base: baseDelay, max: maxDelay}
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// New returns a client for the coordinator at baseURL, such as
// "http://127.0.0.1:8080". The URL must be http or https with a host and
// no query.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid coordinator address %q: use http://HOST:PORT", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""

	c := &Client{
		base:    u,
		http:    &http.Client{},
		timeout: DefaultTimeout,
		retry: retryPolicy{
			maxAttempts: DefaultMaxAttempts,
			base:        DefaultRetryBaseDelay,
			max:         DefaultRetryMaxDelay,
		},
		userAgent: "remotegpu-client",
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// BaseURL returns the coordinator address the client calls.
func (c *Client) BaseURL() string { return c.base.String() }

// call is one API call.
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	// retryable is set when repeating the call cannot change its outcome.
	retryable bool
	// out receives the decoded response body; nil discards it.
	out any
}

// do runs a call with retries and returns the final status code.
func (c *Client) do(ctx context.Context, cl call) (int, error) {
	payload, err := encodeBody(cl.body)
	if err != nil {
		return 0, err
	}
	attempts := 1
	if cl.retryable {
		attempts = c.retry.maxAttempts
	}

	for attempt := 1; ; attempt++ {
		status, body, header, err := c.attempt(ctx, cl, payload)
		retry := attempt < attempts && ctx.Err() == nil &&
			(err != nil || status == http.StatusServiceUnavailable)
		if !retry {
			if err != nil && ctx.Err() != nil {
				return 0, fmt.Errorf("%s %s: %w", cl.method, cl.path, err)
			}
			if err != nil {
				return 0, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, cl.method, cl.path, err)
			}
			return status, decodeResponse(status, body, cl.out)
		}
		pause := c.retry.delay(attempt, retryAfter(header))
		if err := sleep(ctx, pause); err != nil {
			return 0, fmt.Errorf("%s %s: %w", cl.method, cl.path, err)
		}
	}
}

// attempt sends one HTTP request and reads the whole response.
func (c *Client) attempt(ctx context.Context, cl call,
	payload []byte) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	req, err := c.newRequest(ctx, cl, payload)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read response: %w", err)
	}
	if len(body) > maxResponseBytes {
		return 0, nil, nil, fmt.Errorf("response is larger than %d bytes", maxResponseBytes)
	}
	return resp.StatusCode, body, resp.Header, nil
}

func (c *Client) newRequest(ctx context.Context, cl call, payload []byte) (*http.Request, error) {
	// cl.path is already escaped, so it is appended to the string form
	// rather than to URL.Path, which would escape it again.
	target := c.base.String() + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return req, nil
}

func encodeBody(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return data, nil
}

// decodeResponse turns an error status into an *APIError and decodes a
// success body into out.
func decodeResponse(status int, body []byte, out any) error {
	if status >= 400 {
		return newAPIError(status, body)
	}
	if out == nil || status == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %d response: %w", status, err)
	}
	return nil
}
