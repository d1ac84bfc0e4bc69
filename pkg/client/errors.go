package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// Sentinel errors matched by *APIError with errors.Is.
var (
	// ErrInvalid matches 400, 413 and 415: the request can never succeed
	// as sent.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound matches 404: an unknown host or allocation.
	ErrNotFound = errors.New("not found")
	// ErrNoCapacity matches a 409 with code "no_capacity": the request is
	// valid but no host can take it now.
	ErrNoCapacity = errors.New("no capacity")
	// ErrConflict matches any other 409: the request clashes with the
	// current state.
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized matches 401 and 403.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable matches 502, 503 and 504, and wraps connection
	// errors that outlasted the retries.
	ErrUnavailable = errors.New("unavailable")
)

// APIError is an error response of the coordinator.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the api.Error code, such as "no_capacity"; empty when the
	// body was not an api.Error.
	Code string
	// Message is the server's message, or the start of the body when it
	// was not an api.Error.
	Message string
}

// Error returns the server's message and the status code.
func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.StatusCode)
}

// Is matches the package's sentinel errors by status and code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.StatusCode == http.StatusBadRequest ||
			e.StatusCode == http.StatusRequestEntityTooLarge ||
			e.StatusCode == http.StatusUnsupportedMediaType
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrNoCapacity:
		return e.StatusCode == http.StatusConflict && e.Code == api.CodeNoCapacity
	case ErrConflict:
		return e.StatusCode == http.StatusConflict && e.Code != api.CodeNoCapacity
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	case ErrUnavailable:
		return e.StatusCode == http.StatusBadGateway ||
			e.StatusCode == http.StatusServiceUnavailable ||
			e.StatusCode == http.StatusGatewayTimeout
	}
	return false
}

// newAPIError reads an api.Error body, falling back to the status text and
// the start of the body for anything else (a proxy's HTML page, say).
func newAPIError(status int, body []byte) *APIError {
	var e api.Error
	if err := json.Unmarshal(body, &e); err == nil && e.Error != "" {
		return &APIError{StatusCode: status, Code: e.Code, Message: e.Error}
	}
	msg := http.StatusText(status)
	if snippet := strings.TrimSpace(string(body)); snippet != "" {
		if len(snippet) > 200 {
			snippet = strings.ToValidUTF8(snippet[:200], "") + "..."
		}
		msg += ": " + snippet
	}
	return &APIError{StatusCode: status, Message: msg}
}
